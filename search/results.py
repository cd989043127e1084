"""Search log folders and seed studies -> one tidy pandas DataFrame (one row per trial).

Inputs (never rerun, only read):

- a search log folder (:mod:`search.logdir`): DeepHyper's ``results.csv``,
  ``trials/<job_id>/record.json``, ``search.json``;
- a seed study (:mod:`search.seeds`): ``seeds.json`` and ``seed_<S>/record.json``.

Columns of the frame (``TRIAL_COLUMNS`` first, then the rest):

- ``source`` (``"search"`` | ``"seeds"``), ``run_dir``, ``problem``, ``method``, ``backbone``,
  ``seed``, ``job_id`` (search trials; ``<NA>`` in a seed study), ``trial_dir``;
- ``status`` (``"ok"`` | ``"stopped"`` | ``"failed"`` | ``"interrupted"``), ``error``,
  ``failure`` (DeepHyper's ``F_<reason>``), ``objective`` (the search's objective, NaN unless
  ok; a ``stopped`` trial keeps the objective its stopper saw, in ``stopped_objective``),
  ``objective_name``;
- ``p:<field>`` for every ``TrainConfig`` field (the record's full configuration);
- ``<domain>_<split>_<metric>`` for domain source/target, split val/test and the metrics of
  ``training.metrics.METRIC_NAMES`` (e.g. ``target_test_accuracy``);
- every label-free diagnostic of :mod:`training.label_free`, in its column order
  (``source_val_loss``, ``feature_mmd_val``, ``target_val_entropy``, ``target_val_im``, …;
  NaN where a record lacks one, e.g. older records and the classical baseline);
- ``best_epoch``, ``epochs_run``, ``wall_time_s``, ``device``, ``data_dir``.

Failed trials are kept and flagged (``status == "failed"``), never dropped; so are trials a
search's stopper ended early (``status == "stopped"``, fewer ``epochs_run``). A search trial
whose folder exists but has no row in ``results.csv`` was running when the driver died:
``status == "interrupted"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from search.logdir import RESULTS, SEARCH_JSON
from training.config import TrainConfig
from training.label_free import diagnostic_names
from training.metrics import METRIC_NAMES
from training.record import REPO_ROOT, SPLIT_KEYS, read_json, read_record

SEEDS_JSON = "seeds.json"
SPLITS = SPLIT_KEYS
METRIC_COLUMNS = tuple(f"{split}_{metric}" for split in SPLITS for metric in METRIC_NAMES)
TRIAL_COLUMNS = (
    "source", "run_dir", "problem", "method", "backbone", "seed", "job_id", "trial_dir",
    "status", "error", "failure", "objective", "objective_name",
)
TAIL_COLUMNS = ("best_epoch", "epochs_run", "wall_time_s", "device", "data_dir")


@dataclass
class Runs:
    """Result folders found under some paths.

    Attributes:
        searches: search log folders (they hold ``results.csv``).
        seed_studies: seed-study folders (they hold ``seeds.json``).
    """

    searches: list[Path] = field(default_factory=list)
    seed_studies: list[Path] = field(default_factory=list)


def env_paths(variable: str, default: str) -> list[Path]:
    """Paths from environment ``variable`` (``os.pathsep``-separated), else ``default``.

    Relative paths are taken from the repository root, so a notebook finds ``runs/`` wherever
    its kernel was started.
    """
    text = os.environ.get(variable) or default
    paths = [Path(part) for part in text.split(os.pathsep) if part]
    return [p if p.is_absolute() else REPO_ROOT / p for p in paths]


def discover(paths: Iterable[str | os.PathLike]) -> Runs:
    """Find search log folders (``results.csv``) and seed studies (``seeds.json``).

    Each path may be such a folder or any parent of some.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    runs = Runs()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such folder")
        for marker, found in ((RESULTS, runs.searches), (SEEDS_JSON, runs.seed_studies)):
            hits = [path] if (path / marker).is_file() else []
            hits += [p.parent for p in sorted(path.rglob(marker))]
            found.extend(p.resolve() for p in hits if p.resolve() not in found)
    return runs


def record_row(record: dict[str, Any] | None) -> dict[str, Any]:
    """The record's columns: identity, status, ``p:`` config, metrics, diagnostics, timings."""
    if record is None:
        return {"status": "failed", "error": "record.json missing or unreadable"}
    row: dict[str, Any] = {key: record.get(key) for key in (
        "problem", "method", "backbone", "seed", "status", "error", "best_epoch", "epochs_run",
        "wall_time_s", "device")}
    row["data_dir"] = (record.get("data") or {}).get("dir")
    row.update({f"p:{key}": value for key, value in (record.get("config") or {}).items()})
    metrics = record.get("metrics") or {}
    for split in SPLITS:
        values = metrics.get(split) or {}
        row.update({f"{split}_{m}": values.get(m) for m in METRIC_NAMES})
    diagnostics = record.get("diagnostics") or {}
    row.update({key: diagnostics.get(key) for key in diagnostic_names()})
    return row


def _tidy(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> frame with the documented column order and numeric metric columns."""
    frame = pd.DataFrame(rows)
    for column in (*METRIC_COLUMNS, *diagnostic_names(), "objective", "wall_time_s"):
        values = frame[column] if column in frame else pd.Series([None] * len(frame))
        frame[column] = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    for column in ("seed", "job_id", "best_epoch", "epochs_run"):
        values = frame[column] if column in frame else [None] * len(frame)
        frame[column] = pd.array(values, dtype="Int64")
    for column in (*TRIAL_COLUMNS, *TAIL_COLUMNS):
        if column not in frame:
            frame[column] = None
    order = {f"p:{key}": i for i, key in enumerate(TrainConfig.keys())}
    params = sorted((c for c in frame.columns if c.startswith("p:")),
                    key=lambda c: (order.get(c, len(order)), c))
    ordered = [*TRIAL_COLUMNS, *params, *METRIC_COLUMNS, *diagnostic_names(), *TAIL_COLUMNS]
    return frame[ordered + [c for c in frame.columns if c not in ordered]]


def load_search(log_dir: str | os.PathLike) -> pd.DataFrame:
    """Every trial of one search: the rows of ``results.csv`` joined with their records.

    Raises:
        FileNotFoundError: ``log_dir`` has no ``results.csv``.
    """
    log_dir = Path(log_dir).resolve()
    try:
        results = pd.read_csv(log_dir / RESULTS)
    except pd.errors.EmptyDataError:  # created, no trial finished yet
        results = pd.DataFrame(columns=["job_id", "objective"])
    meta = read_json(log_dir / SEARCH_JSON) or {}
    objective_name = meta.get("objective") or (meta.get("args") or {}).get("objective")
    rows = []
    for _, result in results.iterrows():
        job_id = int(result["job_id"])
        trial_dir = log_dir / "trials" / str(job_id)
        objective = pd.to_numeric(pd.Series([result["objective"]]), errors="coerce").iloc[0]
        row = {"source": "search", "run_dir": str(log_dir), "job_id": job_id,
               "trial_dir": str(trial_dir), "objective_name": objective_name,
               "problem": meta.get("problem"), "method": meta.get("method"),
               "backbone": meta.get("backbone")}
        row.update({k: v for k, v in result.items() if str(k).startswith("p:")})
        row.update({k: v for k, v in record_row(read_record(trial_dir)).items()
                    if v is not None or k not in row})
        failure = result.get("m:failure")
        row["failure"] = failure if isinstance(failure, str) and failure else None
        if pd.isna(objective):
            row["status"] = "failed"
            row["failure"] = str(result["objective"])
            row["error"] = row.get("error") or row["failure"]
        if row["status"] == "stopped":
            row["stopped_objective"] = objective
        row["objective"] = objective if row["status"] == "ok" else float("nan")
        rows.append(row)
    done = {int(i) for i in results.get("job_id", [])}
    trials = log_dir / "trials"
    for trial_dir in sorted(trials.iterdir() if trials.is_dir() else [], key=lambda p: p.name):
        if trial_dir.name.isdigit() and int(trial_dir.name) not in done:
            row = {"source": "search", "run_dir": str(log_dir), "job_id": int(trial_dir.name),
                   "trial_dir": str(trial_dir), "objective_name": objective_name,
                   "problem": meta.get("problem"), "method": meta.get("method"),
                   "backbone": meta.get("backbone"),
                   **record_row(read_record(trial_dir))}
            row.update(status="interrupted", objective=float("nan"),
                       error="no row in results.csv: the search driver stopped during this trial")
            rows.append(row)
    return _tidy(rows)


def load_seed_study(seed_dir: str | os.PathLike) -> pd.DataFrame:
    """Every ``seed_<S>/record.json`` of a seed study (a folder without a record: failed).

    Raises:
        FileNotFoundError: ``seed_dir`` has no ``seeds.json``.
    """
    seed_dir = Path(seed_dir).resolve()
    meta = read_json(seed_dir / SEEDS_JSON)
    if meta is None:
        raise FileNotFoundError(f"{seed_dir}: no readable {SEEDS_JSON}")
    rows = []
    folders = [p for p in seed_dir.glob("seed_*") if p.is_dir() and p.name[5:].isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name[5:])):
        record = read_record(folder)
        row = {"source": "seeds", "run_dir": str(seed_dir), "trial_dir": str(folder),
               "problem": meta.get("problem"), "method": meta.get("method"),
               "backbone": meta.get("backbone"), "seed": int(folder.name[5:]),
               "objective_name": None, "objective": float("nan")}
        row.update({k: v for k, v in record_row(record).items() if v is not None or k not in row})
        if record is None:
            row["error"] = "no record.json: the run died before writing it"
        rows.append(row)
    return _tidy(rows)


def load_runs(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> pd.DataFrame:
    """All trials of every search and seed study found under ``paths`` (see :func:`discover`)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    runs = discover(paths)
    frames = [load_search(p) for p in runs.searches]
    frames += [load_seed_study(p) for p in runs.seed_studies]
    frames = [f for f in frames if len(f)]
    if not frames:
        return _tidy([])
    return _tidy(pd.concat(frames, ignore_index=True).to_dict("records"))


def searched_hyperparameters(frame: pd.DataFrame) -> list[str]:
    """Names (without ``p:``) of the hyperparameters that vary in a search's trials."""
    names = []
    for log_dir in frame.loc[frame["source"] == "search", "run_dir"].dropna().unique():
        columns = pd.read_csv(Path(log_dir) / RESULTS, nrows=0).columns
        names += [c[2:] for c in columns if c.startswith("p:") and c[2:] not in names]
    return names


def log_hyperparameters(frame: pd.DataFrame) -> list[str]:
    """Names of the hyperparameters searched on a log scale (from the searches' ``search.json``)."""
    names = []
    for log_dir in frame.loc[frame["source"] == "search", "run_dir"].dropna().unique():
        space = (read_json(Path(log_dir) / SEARCH_JSON) or {}).get("space") or []
        names += [hp["name"] for hp in space if str(hp.get("range", "")).endswith(" log")]
    return sorted(set(names))


def load_roc(trial_dir: str | os.PathLike) -> dict[str, dict[str, list[float]]]:
    """The trial's ``roc.json`` (``{}`` if missing): ``{"target_test": {"fpr", "tpr"}, ...}``."""
    return read_json(Path(trial_dir) / "roc.json") or {}
