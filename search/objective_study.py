"""Which objective ranks trials best by target test accuracy (Spearman, finished search)?

Each registered objective (:mod:`search.objectives`) is recomputed from the trial records of a
finished log folder and rank-correlated with ``target_test`` accuracy over the ``ok`` trials.
The best *label-free* objective is the candidate default; ``target_val_accuracy`` is an oracle
shown for reference.

Usage::

    python search/objective_study.py runs/search/mmd_deepmerge [more log dirs...]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

from search.objectives import OBJECTIVES, ORACLES, objective_value
from training.record import read_record


def records_frame(log_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per ``ok`` trial record: job id, every objective, target test accuracy."""
    rows = []
    for path in sorted(Path(log_dir).glob("trials/*/record.json")):
        record = read_record(path.parent)
        if record is None or record.get("status") != "ok":
            continue
        row = {"job_id": path.parent.name,
               "target_test_accuracy": record["metrics"]["target_test"]["accuracy"]}
        row.update({name: objective_value(name, record) for name in OBJECTIVES})
        rows.append(row)
    return pd.DataFrame(rows)


def objective_study(log_dir: str | os.PathLike) -> pd.DataFrame:
    """Spearman correlation of each objective with target test accuracy.

    Returns:
        One row per objective: ``objective``, ``spearman``, ``p_value``, ``n_trials``,
        ``oracle`` (needs target labels), sorted by ``spearman`` (best first).
    """
    frame = records_frame(log_dir)
    rows = []
    for name in OBJECTIVES:
        pair = frame[[name, "target_test_accuracy"]].dropna() if len(frame) else frame
        if len(pair) >= 3 and pair[name].nunique() > 1 and pair.iloc[:, 1].nunique() > 1:
            rho, p_value = spearmanr(pair[name], pair["target_test_accuracy"])
        else:
            rho, p_value = float("nan"), float("nan")
        rows.append({"objective": name, "spearman": float(rho), "p_value": float(p_value),
                     "n_trials": len(pair), "oracle": name in ORACLES})
    return pd.DataFrame(rows).sort_values("spearman", ascending=False, na_position="last")


def main(argv: list[str] | None = None) -> int:
    """CLI: print the study table for each log folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log_dirs", nargs="+", help="finished search log folders")
    args = parser.parse_args(argv)
    for log_dir in args.log_dirs:
        print(f"== {log_dir}")
        print(objective_study(log_dir).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
