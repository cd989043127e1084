"""The trial record (``record.json``) and every other JSON/CSV the project writes: one module.

- :func:`base_record` / :func:`failure_record`: the record's skeleton, with the same keys for
  a trial that ran and for one that could not start (see ``docs/CONTRACTS.md``);
- :class:`Failure`: the typed failure reasons (``F_nan``, ``F_oom``, …), set where the failure
  happens and returned to DeepHyper as the objective of a failed trial;
- :func:`write_json`, :func:`write_text`, :func:`write_npz`: atomic writes (temporary file,
  fsync, then rename; ``galaxies.atomic.atomic_path``): a full disk or a read-only folder
  raises ``OSError`` naming the destination, which keeps its old content, and removes the
  temporary file, so no truncated record, table or ``summary.csv`` remains;
- :func:`read_json`, :func:`read_record`: readers that return ``None`` for a missing or
  unreadable file;
- :func:`recorded_identity`, :func:`study_data_mismatch`: the data a record (or a seed
  study's records) was made on, for ``galaxies.pairs.same_data``;
- :func:`package_versions`: the versions a result depends on;
- :func:`portable_path`, :func:`resolve_path`: paths as stored in records and reports
  (relative to the repository root when under it), and back.

This module imports no network library.
"""

from __future__ import annotations

import json
import math
import os
import platform
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from galaxies.atomic import atomic_path
from galaxies.pairs import data_identity, same_data

if TYPE_CHECKING:
    from galaxies.datasets import Benchmark
    from training.config import TrainConfig

__all__ = [
    "CALIBRATION_FILE",
    "OOD_REFERENCE_FILE",
    "PREDICTIONS",
    "REPO_ROOT",
    "RECORD",
    "ROC",
    "SPLIT_KEYS",
    "Failure",
    "base_record",
    "failure_record",
    "package_versions",
    "portable_path",
    "read_json",
    "read_record",
    "recorded_identity",
    "resolve_path",
    "study_data_mismatch",
    "write_json",
    "write_npz",
    "write_text",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
RECORD = "record.json"
PREDICTIONS = "predictions.npz"  # per-image p_merger, label and galaxy_id of every split
ROC = "roc.json"
#: A trial's temperature, written by ``apply/calibrate.py`` beside its record.
CALIBRATION_FILE = "calibration.json"
#: A trial's out-of-distribution reference, written by ``apply/fit_ood.py`` beside its record.
OOD_REFERENCE_FILE = "ood_reference.npz"
SPLIT_KEYS = ("source_val", "target_val", "source_test", "target_test")
VERSIONED_PACKAGES = ("galaxy-da", "torch", "torchvision", "numpy", "scikit-learn", "h5py",
                      "galsim", "deephyper", "ray", "pandas")


class Failure(StrEnum):
    """Why a trial failed: its record's ``failure`` and its DeepHyper objective (``F_<reason>``).

    ``F_nan``: a non-finite loss; ``F_oom``: out of memory; ``F_invalid_config``: the sampled
    configuration is not a valid ``TrainConfig``; ``F_invalid_data``: the data files do not
    follow the schema; ``F_nan_objective``: the trial finished but its objective is not finite;
    ``F_error``: any other exception (its traceback is in the record).
    """

    NAN = "F_nan"
    OOM = "F_oom"
    INVALID_CONFIG = "F_invalid_config"
    INVALID_DATA = "F_invalid_data"
    NAN_OBJECTIVE = "F_nan_objective"
    ERROR = "F_error"


def package_versions() -> dict[str, str | None]:
    """Python and the versions of the packages a result depends on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def portable_path(path: str | os.PathLike) -> str:
    """``path`` as records and reports store it.

    Relative to the repository root when it lies under it (as a user types it from there),
    else absolute.
    """
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def resolve_path(text: str | os.PathLike, base: str | os.PathLike = REPO_ROOT) -> Path:
    """A stored path back to an absolute one (relative paths are taken from ``base``)."""
    path = Path(text)
    return path if path.is_absolute() else (Path(base) / path).resolve()


def record_skeleton(problem: str, config: dict[str, Any], device: str | None
                    ) -> dict[str, Any]:
    """Every key of a trial record, with the values known before anything ran.

    Status ``running``; trials, failure records and the classical baseline all start from it.
    """
    return {
        "problem": problem,
        "method": config.get("method"),
        "backbone": config.get("backbone"),
        "config": config,
        "seed": config.get("seed"),
        "status": "running",
        "failure": None,
        "error": None,
        "traceback": None,
        "metrics": dict.fromkeys(SPLIT_KEYS),
        "diagnostics": {},
        "history": [],
        "best_epoch": None,
        "epochs_run": None,
        "wall_time_s": None,
        "device": device,
        "compute_path": None,
        "machine": None,
        "host": platform.node(),
        "versions": package_versions(),
        "data": {"dir": None, "source_attrs": None, "target_attrs": None, "channel_stats": None,
                 "identity": None},
        "files": {},
    }


def base_record(config: TrainConfig, problem: str, bench: Benchmark, device: str) -> dict:
    """A record with everything known before training (status ``running``).

    ``data.identity`` is ``galaxies.pairs.data_identity`` of the benchmark's folder: what
    seed studies, resume, ``--from-trial``, calibration and the OOD fit compare.
    """
    record = record_skeleton(problem, config.to_dict(), device)
    record["data"].update(
        dir=portable_path(bench.data_dir),
        source_attrs=bench.source.attrs,
        target_attrs=bench.target.attrs,
        channel_stats=bench.stats.to_dict(),
        identity=data_identity(bench.data_dir),
    )
    return record


def recorded_identity(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The data identity a trial record states, for ``galaxies.pairs.same_data``.

    ``record["data"]["identity"]``; a record written before records carried it (committed
    reports, older runs) has its domains' attributes only, so its identity is unknown and
    ``{domain: {"attrs": ...}}`` is returned: ``same_data`` then falls back to comparing the
    attributes. ``None`` when the record states neither (a failure record).
    """
    data = (record or {}).get("data") or {}
    if data.get("identity"):
        return data["identity"]
    attrs = {domain: data.get(f"{domain}_attrs") for domain in ("source", "target")}
    if not any(value is not None for value in attrs.values()):
        return None
    return {domain: {"attrs": value} for domain, value in attrs.items() if value is not None}


def study_data_mismatch(study_dir: str | os.PathLike, identity: dict[str, Any]) -> str | None:
    """Why the seed study in ``study_dir`` was made on other data than ``identity``, or ``None``.

    Compares (``galaxies.pairs.same_data``) the ``data`` of ``study_dir/seeds.json`` and of
    every ``seed_<S>/record.json`` with status ``ok`` (the records a rerun keeps); the first
    difference is returned as ``"<file>: <what differs>"``. Used by ``search/seeds.py`` and
    ``training/classical.py --seeds``.
    """
    study_dir = Path(study_dir)
    study = read_json(study_dir / "seeds.json") or {}
    why = same_data(study.get("data"), identity)
    if why:
        return f"seeds.json: {why}"
    for folder in sorted(study_dir.glob("seed_*")):
        record = read_record(folder)
        if record is None or record.get("status") != "ok":
            continue
        why = same_data(recorded_identity(record), identity)
        if why:
            return f"{folder.name}/{RECORD}: {why}"
    return None


def failure_record(problem: str, config: dict[str, Any], failure: Failure, error: str,
                   traceback: str | None, wall_time_s: float, data_dir: str | None,
                   device: str | None = None) -> dict[str, Any]:
    """The record of a trial that failed before training wrote its own (same keys)."""
    record = record_skeleton(problem, config, device)
    record.update(status="failed", failure=str(failure), error=error, traceback=traceback,
                  wall_time_s=wall_time_s)
    record["data"]["dir"] = portable_path(data_dir) if data_dir else None
    return record


def json_safe(value: Any) -> Any:
    """Replace non-finite floats by ``None`` so that the file is strict JSON.

    Numpy scalars become Python numbers first.
    """
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def json_safe_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """HDF5 attributes as a record stores them (:func:`write_json`'s form)."""
    return json.loads(json.dumps(json_safe(attrs), default=str))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically (temporary file, fsync, then rename; see the module doc)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as strict JSON atomically (non-finite floats become ``null``)."""
    return write_text(path, json.dumps(json_safe(payload), indent=1, default=str))


def write_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> Path:
    """Write numpy ``arrays`` as an ``.npz`` archive atomically."""
    import numpy as np

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """A JSON file as a dict (``None`` if it is missing, unreadable or not an object)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_record(trial_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``<trial_dir>/record.json`` (``None`` if it is missing or unreadable)."""
    return read_json(Path(trial_dir) / RECORD)
