"""The search's log folder: what is done, what was interrupted, and ``search.json``.

Layout::

    <log_dir>/results.csv              DeepHyper's own (one row per completed trial)
    <log_dir>/trials/<job_id>/record.json   one record per trial (job id = DeepHyper's)
    <log_dir>/search.json              problem, fixed values, objective, data (a path relative
                                       to the repository and its identity), the command,
                                       versions, runs
    <log_dir>/summary.csv              top-k configurations with source/target metrics

A trial counts as *completed* when its row is in ``results.csv``. A ``trials/<id>`` folder
without a row belongs to a trial that was running when the driver died: it is *interrupted*,
kept as it is, and its job id is never reused (a resumed search numbers new jobs after the
largest id on disk), so records are never overwritten or duplicated.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from training.record import package_versions, read_json, write_json

RESULTS = "results.csv"
SEARCH_JSON = "search.json"
SUMMARY = "summary.csv"


@dataclass
class LogDirState:
    """What a log folder already holds.

    Attributes:
        done_ids: job ids with a row in ``results.csv`` (completed trials).
        trial_ids: job ids with a ``trials/<id>`` folder.
        search: the previous ``search.json`` (empty if none).
    """

    done_ids: list[int] = field(default_factory=list)
    trial_ids: list[int] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)

    @property
    def n_done(self) -> int:
        """Number of completed trials."""
        return len(self.done_ids)

    @property
    def interrupted_ids(self) -> list[int]:
        """Trials with a folder but no row: they were running when the driver stopped."""
        return sorted(set(self.trial_ids) - set(self.done_ids))

    @property
    def next_job_id(self) -> int:
        """First job id that no earlier trial used."""
        return max([*self.done_ids, *self.trial_ids], default=-1) + 1

    @property
    def has_results(self) -> bool:
        """Whether anything of an earlier search is there."""
        return bool(self.done_ids or self.trial_ids)


def inspect_log_dir(log_dir: str | os.PathLike) -> LogDirState:
    """Read what ``log_dir`` already holds (nothing if it does not exist)."""
    log_dir = Path(log_dir)
    state = LogDirState()
    results = log_dir / RESULTS
    if results.is_file() and results.stat().st_size > 0:
        frame = pd.read_csv(results)
        if "job_id" in frame:
            state.done_ids = sorted(int(i) for i in frame["job_id"])
    trials = log_dir / "trials"
    if trials.is_dir():
        state.trial_ids = sorted(int(p.name) for p in trials.iterdir() if p.name.isdigit())
    state.search = read_json(log_dir / SEARCH_JSON) or {}
    return state


def data_identity(data_dir: str | os.PathLike) -> dict[str, Any]:
    """What makes two data folders the same data: per domain, its size and HDF5 attributes.

    A moved or copied folder keeps its identity; a re-simulated one with another seed or
    generator, or another data set, does not.
    """
    import h5py

    from galaxies.schema import domain_paths, read_attrs

    identity: dict[str, Any] = {}
    for domain, path in domain_paths(data_dir).items():
        try:
            with h5py.File(path, "r") as h5:
                attrs = read_attrs(h5)
                rows = int(h5["labels"].shape[0]) if "labels" in h5 else None
        except OSError:
            identity[domain] = None
            continue
        identity[domain] = {"bytes": path.stat().st_size, "rows": rows,
                            "attrs": json.loads(json.dumps(attrs, default=str))}
    return identity


def write_search_json(log_dir: Path, payload: dict[str, Any], previous: dict[str, Any]) -> Path:
    """Write ``search.json``: this run's ``payload`` plus the history of earlier runs."""
    runs = list(previous.get("runs", []))
    runs.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
                 "resume": payload.get("resume", False),
                 "completed_before": payload.get("completed_before", 0),
                 "interrupted_before": payload.get("interrupted_before", [])})
    return write_json(log_dir / SEARCH_JSON, {**payload, "runs": runs,
                                               "versions": package_versions()})
