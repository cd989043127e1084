"""Best configurations of a search: ``summary.csv`` and the table printed at the end.

Reads DeepHyper's ``results.csv`` (``deephyper.analysis.hpo``) and each trial's
``record.json``; never reruns anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from deephyper.analysis.hpo import filter_failed_objectives, read_results_from_csv

from search.logdir import RESULTS, SUMMARY
from training.record import SPLIT_KEYS, read_record, write_text


def _status(frame: pd.DataFrame) -> pd.Series:
    """Each row's trial status (``m:status``; older results without it: ``ok``)."""
    if "m:status" in frame:
        return frame["m:status"].fillna("ok").astype(str)
    return pd.Series("ok", index=frame.index)


def summarize(log_dir: str | os.PathLike, k: int = 5, write: bool = True) -> pd.DataFrame:
    """Top-``k`` trials by objective with their source/target accuracies.

    Trials that ran to the end (status ``ok``) come first; trials a stopper ended early
    (status ``stopped``, objective measured at fewer epochs) follow, ranked among themselves,
    so that with ``--stopper epochs-K`` (every trial stopped) the ranking after K epochs shows.

    Args:
        log_dir: the search's log folder.
        k: number of configurations kept.
        write: also write ``<log_dir>/summary.csv``.

    Returns:
        One row per configuration, best first: ``job_id``, ``status``, ``epochs_run``,
        ``objective``, ``<split>_acc`` for source/target val/test, then the searched
        hyperparameters (without the ``p:`` prefix).
    """
    results = Path(log_dir) / RESULTS
    if not results.is_file():
        return pd.DataFrame()
    frame, _ = filter_failed_objectives(read_results_from_csv(str(results)))
    frame = frame.assign(_stopped=(_status(frame) == "stopped").astype(int))
    frame = frame.sort_values(["_stopped", "objective", "job_id"],
                              ascending=[True, False, True]).head(k)
    rows = []
    for _, row in frame.iterrows():
        record = read_record(Path(log_dir) / "trials" / str(int(row["job_id"]))) or {}
        metrics = record.get("metrics") or {}
        out: dict[str, Any] = {"job_id": int(row["job_id"]),
                               "status": "stopped" if row["_stopped"] else "ok",
                               "epochs_run": record.get("epochs_run"),
                               "objective": float(row["objective"])}
        for split in SPLIT_KEYS:
            out[f"{split}_acc"] = (metrics.get(split) or {}).get("accuracy")
        out.update({c[2:]: row[c] for c in frame.columns if c.startswith("p:")})
        rows.append(out)
    table = pd.DataFrame(rows)
    if write:
        write_text(Path(log_dir) / SUMMARY, table.to_csv(index=False))
    return table


def count_outcomes(log_dir: str | os.PathLike) -> dict[str, int]:
    """``{"completed": n, "failed": n, "stopped": n}`` from ``results.csv``.

    ``completed`` counts every trial with a row (failed and stopped ones included).
    """
    results = Path(log_dir) / RESULTS
    if not results.is_file():
        return {"completed": 0, "failed": 0, "stopped": 0}
    ok, failed = filter_failed_objectives(read_results_from_csv(str(results)))
    return {"completed": len(ok) + len(failed), "failed": len(failed),
            "stopped": int((_status(ok) == "stopped").sum())}
