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


def summarize(log_dir: str | os.PathLike, k: int = 5, write: bool = True) -> pd.DataFrame:
    """Top-``k`` completed trials by objective with their source/target accuracies.

    Args:
        log_dir: the search's log folder.
        k: number of configurations kept.
        write: also write ``<log_dir>/summary.csv``.

    Returns:
        One row per configuration, best first: ``job_id``, ``objective``, ``<split>_acc`` for
        source/target val/test, then the searched hyperparameters (without the ``p:`` prefix).
    """
    results = Path(log_dir) / RESULTS
    if not results.is_file():
        return pd.DataFrame()
    frame, _ = filter_failed_objectives(read_results_from_csv(str(results)))
    frame = frame.sort_values(["objective", "job_id"], ascending=[False, True]).head(k)
    rows = []
    for _, row in frame.iterrows():
        record = read_record(Path(log_dir) / "trials" / str(int(row["job_id"]))) or {}
        metrics = record.get("metrics") or {}
        out: dict[str, Any] = {"job_id": int(row["job_id"]), "objective": float(row["objective"])}
        for split in SPLIT_KEYS:
            out[f"{split}_acc"] = (metrics.get(split) or {}).get("accuracy")
        out.update({c[2:]: row[c] for c in frame.columns if c.startswith("p:")})
        rows.append(out)
    table = pd.DataFrame(rows)
    if write:
        write_text(Path(log_dir) / SUMMARY, table.to_csv(index=False))
    return table


def count_outcomes(log_dir: str | os.PathLike) -> dict[str, int]:
    """``{"completed": n, "failed": n}`` from ``results.csv``."""
    results = Path(log_dir) / RESULTS
    if not results.is_file():
        return {"completed": 0, "failed": 0}
    ok, failed = filter_failed_objectives(read_results_from_csv(str(results)))
    return {"completed": len(ok) + len(failed), "failed": len(failed)}
