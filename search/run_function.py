"""The run function DeepHyper calls once per trial (importable at module level).

``run_trial_job(job, context)`` turns the sampled hyperparameters into a ``TrainConfig``
(``{**defaults, **fixed, **sampled}``), trains through ``training.loop.run_trial`` into
``<log_dir>/trials/<job_id>/`` and returns DeepHyper's contract::

    {"objective": float, "metadata": {status, failure, accuracies, diagnostics, record, ...}}
    {"objective": "F_<reason>", "metadata": {...same keys...}}   # a failed trial

It never raises: an exception, a non-finite loss or objective, running out of memory, an
invalid configuration or unreadable data become ``F_<reason>`` (``F_nonfinite_loss``,
``F_oom``, ``F_invalid_config``, ``F_invalid_data``, ``F_exception``,
``F_nonfinite_objective``) and the traceback stays in the trial's ``record.json`` (written
here when ``run_trial`` itself could not write one). DeepHyper crashes the whole search on an
exception in the run function, so this matters.

``context`` (passed through the evaluator's ``run_function_kwargs``, JSON-serialisable):
``problem``, ``data_dir``, ``log_dir`` (absolute), ``objective``, ``fixed`` (overrides that
are not searched), ``torch_threads``, ``die_with_driver`` (process pool: a worker is killed
when the driver dies, so a ``kill -9`` of the driver leaves no orphan trials running).
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any

from search.objectives import objective_value

METADATA_KEYS = (
    "status", "failure", "source_val_accuracy", "target_val_accuracy", "source_test_accuracy",
    "target_test_accuracy", "feature_mmd_val", "target_val_entropy", "best_epoch", "wall_time_s",
    "record",
)


def trial_dir(log_dir: str | os.PathLike, job_id: int) -> Path:
    """Folder of one trial: ``<log_dir>/trials/<job_id>``."""
    return Path(log_dir) / "trials" / str(job_id)


def to_python(value: Any) -> Any:
    """NumPy/pandas scalars (as DeepHyper samples them) -> plain Python scalars."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def coerce_like(value: Any, default: Any) -> Any:
    """Give ``value`` the Python type of the field's default (int <-> float where exact)."""
    value = to_python(value)
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def merge_config(defaults: dict[str, Any], fixed: dict[str, Any], sampled: dict[str, Any]) -> dict:
    """``{**defaults, **fixed, **sampled}`` with values coerced to the defaults' types."""
    merged = dict(defaults)
    for key, value in {**fixed, **sampled}.items():
        merged[key] = coerce_like(value, defaults.get(key))
    return merged


def failure_reason(error: str | None) -> str:
    """Short ``F_<reason>`` slug for a failed record's ``error`` text."""
    text = (error or "").lower()
    if "non-finite" in text or "nan" in text.split() or "not finite" in text:
        return "F_nonfinite_loss"
    if "out of memory" in text or "outofmemory" in text or "memoryerror" in text:
        return "F_oom"
    return "F_exception"


def _metrics_metadata(record: dict[str, Any]) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    diagnostics = record.get("diagnostics") or {}

    def acc(split: str) -> float | None:
        return (metrics.get(split) or {}).get("accuracy")

    return {
        "source_val_accuracy": acc("source_val"), "target_val_accuracy": acc("target_val"),
        "source_test_accuracy": acc("source_test"), "target_test_accuracy": acc("target_test"),
        "feature_mmd_val": diagnostics.get("feature_mmd_val"),
        "target_val_entropy": diagnostics.get("target_val_entropy"),
        "best_epoch": record.get("best_epoch"), "wall_time_s": record.get("wall_time_s"),
    }


def write_failure_record(out_dir: Path, context: dict, config: dict, reason: str, error: str,
                         tb: str, wall_time_s: float) -> Path:
    """Write a minimal failed ``record.json`` when ``run_trial`` could not write its own."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "problem": context["problem"], "method": config.get("method"),
        "backbone": config.get("backbone"), "config": config, "seed": config.get("seed"),
        "status": "failed", "error": f"{reason}: {error}", "traceback": tb,
        "metrics": {k: None for k in ("source_val", "target_val", "source_test", "target_test")},
        "diagnostics": {}, "history": [], "best_epoch": None, "wall_time_s": wall_time_s,
        "data": {"dir": context["data_dir"]},
    }
    path = out_dir / "record.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(path)
    return path


def set_pdeathsig() -> None:
    """Linux: have this process SIGKILLed when its parent dies (no-op elsewhere)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def die_with_driver() -> None:
    """In a process-pool worker: die with the driver, so a killed driver leaves no orphan."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        set_pdeathsig()


def _failed(reason: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"objective": reason, "metadata": {**metadata, "status": "failed", "failure": reason}}


def run_trial_job(job: Any, context: dict[str, Any]) -> dict[str, Any]:
    """Train one sampled configuration; return ``{"objective", "metadata"}`` (never raises).

    Args:
        job: DeepHyper's ``RunningJob`` (``job.parameters``: the sampled values; ``job["job_id"]``).
        context: see the module docstring.

    Returns:
        ``{"objective": float | "F_<reason>", "metadata": {...}}`` with the same metadata keys
        for successes and failures (so DeepHyper's ``results.csv`` keeps one set of columns).
    """
    start = time.perf_counter()
    out_dir = trial_dir(context["log_dir"], int(job["job_id"]))
    metadata: dict[str, Any] = dict.fromkeys(METADATA_KEYS)
    metadata["record"] = str(out_dir / "record.json")
    config: dict[str, Any] = {}
    reason, error, tb = "F_exception", "", ""
    try:
        import torch

        from problems import get_problem
        from training.config import TrainConfig

        torch.set_num_threads(max(1, int(context.get("torch_threads") or 1)))
        if context.get("die_with_driver"):
            die_with_driver()
        defaults = get_problem(context["problem"]).defaults.to_dict()
        config = merge_config(defaults, context.get("fixed") or {}, dict(job.parameters))
        try:
            train_config = TrainConfig.from_dict(config)
        except (KeyError, TypeError, ValueError) as exc:
            reason, error, tb = "F_invalid_config", f"{type(exc).__name__}: {exc}", ""
            raise
        from training.loop import run_trial

        record = run_trial(train_config, context["data_dir"], out_dir,
                           problem=context["problem"], progress=False)
        metadata.update(_metrics_metadata(record))
        if record.get("status") != "ok":
            return _failed(failure_reason(record.get("error")), metadata)
        value = objective_value(context["objective"], record)
        if value is None or not math.isfinite(value):
            return _failed("F_nonfinite_objective", metadata)
        metadata.update(status="ok", failure="")
        return {"objective": float(value), "metadata": metadata}
    except Exception as exc:  # DeepHyper must never see an exception from a trial
        if reason == "F_exception":
            name = type(exc).__name__
            if isinstance(exc, MemoryError) or "OutOfMemory" in name:
                reason = "F_oom"
            elif name == "InvalidDatasetError":
                reason = "F_invalid_data"
            error, tb = f"{name}: {exc}", traceback.format_exc()
        tb = tb or traceback.format_exc()
        wall = time.perf_counter() - start
        try:
            write_failure_record(out_dir, context, config, reason, error, tb, wall)
        except OSError:
            metadata["record"] = ""
        metadata["wall_time_s"] = wall
        return _failed(reason, metadata)
