"""The self-describing trial record (``record.json``): skeleton, versions, atomic writes."""

from __future__ import annotations

import json
import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from galaxies.atomic import atomic_path
from galaxies.datasets import Benchmark
from training.config import TrainConfig

VERSIONED_PACKAGES = (
    "galaxy-da",
    "torch",
    "torchvision",
    "numpy",
    "scikit-learn",
    "h5py",
    "galsim",
    "deephyper",
)
FEATURE_MMD_MAX_SAMPLES = 1000


def package_versions() -> dict[str, str | None]:
    """Python and the versions of the packages a result depends on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def base_record(
    config: TrainConfig, problem: str | None, bench: Benchmark, device: torch.device
) -> dict[str, Any]:
    """A record with everything known before training (status ``running``)."""
    return {
        "problem": problem or f"{config.method}_{config.backbone}",
        "method": config.method,
        "backbone": config.backbone,
        "config": config.to_dict(),
        "seed": config.seed,
        "status": "running",
        "error": None,
        "traceback": None,
        "metrics": {f"{d}_{s}": None for d in ("source", "target") for s in ("val", "test")},
        "diagnostics": {},
        "history": [],
        "best_epoch": None,
        "wall_time_s": None,
        "device": str(device),
        "host": platform.node(),
        "versions": package_versions(),
        "data": {
            "dir": str(Path(bench.data_dir).resolve()),
            "source_attrs": bench.source.attrs,
            "target_attrs": bench.target.attrs,
            "channel_stats": bench.stats.to_dict(),
        },
        "files": {},
    }


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by ``None`` so that the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as JSON atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(_json_safe(payload), handle, indent=1, default=str)
    return path


def feature_mmd(source: torch.Tensor, target: torch.Tensor) -> float:
    """Label-free domain gap: biased multi-kernel MMD² between validation features.

    Uses a fixed estimator (5 Gaussian kernels around the median pairwise distance) on at most
    ``FEATURE_MMD_MAX_SAMPLES`` rows per domain, whatever the trial's own transfer loss, so
    that trials of every method are compared on the same scale.
    """
    from training.mmd import MultiKernelMMD

    generator = torch.Generator().manual_seed(0)
    pick_s = torch.randperm(len(source), generator=generator)[:FEATURE_MMD_MAX_SAMPLES]
    pick_t = torch.randperm(len(target), generator=generator)[:FEATURE_MMD_MAX_SAMPLES]
    estimator = MultiKernelMMD(
        bandwidths="family", base="median", mul=2.0, num=5, estimator="biased"
    )
    with torch.no_grad():
        return float(estimator(source[pick_s].double(), target[pick_t].double()))
