r"""The selection study: how well does each label-free validator pick models, against the oracle?

For every ``ok`` trial of finished searches, every objective of :mod:`search.objectives` is
recomputed from the trial record (the label-free diagnostics of :mod:`training.label_free`
are stored in ``record["diagnostics"]``) and compared with a *reference* accuracy that uses
target labels:

- **rank correlation**: Spearman's rho between the validator and the reference over the
  trials of one problem (one search, or several of the same problem), and its mean over
  problems;
- **selection gap** (DomainBed's "training-domain validation vs oracle", Gulrajani &
  Lopez-Paz 2021): per problem, the reference accuracy of the trial the validator ranks first
  minus that of the trial the reference itself ranks first (the oracle's pick), in points;
  0 is perfect, negative is worse. DomainBed reports ~1-3 points between training-domain and
  oracle selection; the goal here is a gap of at most 2 points.

**Choose, then confirm** (the protocol of ``benchmarks/results/protocol-and-headline.md``:
no decision reads a test
split): the default objective is chosen on one set of searches (``--choose``, development
data) with the target *validation* accuracy as the reference, as the label-free validator with
the smallest mean gap (ties: the larger mean rho), and confirmed on another set
(``--confirm``, searches on other data) with the target *test* accuracy. Oracle objectives
(``target_val_accuracy``) are shown for reference and never chosen. The searches should be
random searches, so that the trials are not already ordered by one of the validators.

Usage::

    python search/selection_study.py runs/search/mmd_deepmerge            # one search: rho table
    python search/selection_study.py --choose runs/selection/dev2/* \
        --confirm runs/selection/dev1/* --json benchmarks/records/selection_study.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import spearmanr

from search.objectives import OBJECTIVES, ORACLES, objective_value
from training.record import portable_path, read_record, write_json

REFERENCES = ("target_val_accuracy", "target_test_accuracy")
CHOOSE_REFERENCE = "target_val_accuracy"
CONFIRM_REFERENCE = "target_test_accuracy"
GAP_GOAL_POINTS = 2.0


def _ref(reference: str) -> str:
    """Column of a reference accuracy (apart from the oracle objective of the same name)."""
    return f"reference:{reference}"


def records_frame(log_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per ``ok`` trial record: problem, job id, objectives, reference accuracies.

    The reference target accuracies are in ``reference:target_val_accuracy`` and
    ``reference:target_test_accuracy`` (the oracle objective has a column of its own).
    """
    rows = []
    for path in sorted(Path(log_dir).glob("trials/*/record.json")):
        record = read_record(path.parent)
        if record is None or record.get("status") != "ok":
            continue
        row = {"log_dir": str(log_dir), "problem": record.get("problem"),
               "job_id": path.parent.name,
               _ref("target_val_accuracy"): record["metrics"]["target_val"]["accuracy"],
               _ref("target_test_accuracy"): record["metrics"]["target_test"]["accuracy"]}
        row.update({name: objective_value(name, record) for name in OBJECTIVES})
        rows.append(row)
    return pd.DataFrame(rows)


def _spearman(frame: pd.DataFrame, name: str, reference: str) -> tuple[float, float, int]:
    reference = _ref(reference)
    pair = frame[[name, reference]].dropna() if len(frame) else frame
    if len(pair) >= 3 and pair[name].nunique() > 1 and pair[reference].nunique() > 1:
        rho, p_value = spearmanr(pair[name], pair[reference])
        return float(rho), float(p_value), len(pair)
    return math.nan, math.nan, len(pair)


def objective_study(log_dir: str | os.PathLike,
                    reference: str = CONFIRM_REFERENCE) -> pd.DataFrame:
    """Spearman correlation of each objective with ``reference`` over one search's trials.

    Returns:
        One row per objective: ``objective``, ``spearman``, ``p_value``, ``n_trials``,
        ``oracle`` (needs target labels), sorted by ``spearman`` (best first).
    """
    frame = records_frame(log_dir)
    rows = []
    for name in OBJECTIVES:
        rho, p_value, n = _spearman(frame, name, reference)
        rows.append({"objective": name, "spearman": rho, "p_value": p_value, "n_trials": n,
                     "oracle": name in ORACLES})
    return pd.DataFrame(rows).sort_values("spearman", ascending=False, na_position="last")


def selection_table(frame: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per problem × objective: Spearman rho with ``reference``, the pick and its gap.

    Columns: ``problem``, ``objective``, ``oracle``, ``spearman``, ``n_trials``,
    ``picked_job`` (the trial the objective ranks first; ties: lowest job id),
    ``picked_accuracy``, ``best_accuracy`` (the oracle's pick), ``gap_points``
    (= 100 × (picked - best), ``<= 0``).
    """
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; valid: {', '.join(REFERENCES)}")
    rows = []
    for problem, trials in frame.groupby("problem", sort=True):
        best = float(trials[_ref(reference)].max())
        for name in OBJECTIVES:
            rho, _, n = _spearman(trials, name, reference)
            scored = trials.dropna(subset=[name])
            picked = None
            if len(scored):
                ranked = scored.assign(_job=pd.to_numeric(scored["job_id"], errors="coerce"))
                picked = ranked.sort_values([name, "_job"], ascending=[False, True]).iloc[0]
            accuracy = float(picked[_ref(reference)]) if picked is not None else math.nan
            rows.append({"problem": problem, "objective": name, "oracle": name in ORACLES,
                         "spearman": rho, "n_trials": n,
                         "picked_job": picked["job_id"] if picked is not None else None,
                         "picked_accuracy": accuracy, "best_accuracy": best,
                         "gap_points": 100.0 * (accuracy - best)})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per objective: mean rho and mean / worst gap over problems, best mean gap first."""
    grouped = table.groupby("objective", sort=False).agg(
        oracle=("oracle", "first"), mean_spearman=("spearman", "mean"),
        mean_gap_points=("gap_points", "mean"), worst_gap_points=("gap_points", "min"),
        n_problems=("problem", "nunique"), n_trials=("n_trials", "sum")).reset_index()
    return grouped.sort_values(["mean_gap_points", "mean_spearman"], ascending=[False, False],
                               na_position="last").reset_index(drop=True)


def choose_objective(study: pd.DataFrame) -> str:
    """The label-free objective with the best (largest, i.e. smallest) mean gap; ties: mean rho.

    Raises:
        ValueError: no label-free objective has a finite gap.
    """
    candidates = study[~study["oracle"] & study["mean_gap_points"].notna()]
    if candidates.empty:
        raise ValueError("no label-free objective could be scored on these searches")
    ranked = candidates.sort_values(["mean_gap_points", "mean_spearman"],
                                    ascending=[False, False], na_position="last")
    return str(ranked.iloc[0]["objective"])


def load_set(log_dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The trials of several finished searches.

    Raises:
        FileNotFoundError: a folder holds no ``results.csv``, or no ``ok`` trial at all.
    """
    frames = []
    for log_dir in log_dirs:
        if not (Path(log_dir) / "results.csv").is_file():
            raise FileNotFoundError(f"{log_dir}: not a search log folder (no results.csv)")
        frames.append(records_frame(log_dir))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise FileNotFoundError("no ok trial in " + ", ".join(map(str, log_dirs)))
    return frame


def choose_and_confirm(choose_dirs: list[str], confirm_dirs: list[str] | None = None,
                       ) -> dict[str, Any]:
    """The study of ``benchmarks/results/selection.md``: choose on one set, confirm on the other."""
    result: dict[str, Any] = {"gap_goal_points": GAP_GOAL_POINTS}
    chosen = None
    for role, dirs, reference in (("choose", choose_dirs, CHOOSE_REFERENCE),
                                  ("confirm", confirm_dirs, CONFIRM_REFERENCE)):
        if not dirs:
            continue
        frame = load_set(dirs)
        table = selection_table(frame, reference)
        overview = summary(table)
        part = {"log_dirs": [portable_path(Path(d)) for d in dirs], "reference": reference,
                "n_trials": len(frame), "problems": sorted(frame["problem"].unique()),
                "per_problem": table.to_dict(orient="records"),
                "summary": overview.to_dict(orient="records")}
        # the same searches, also against the other reference (shown, never used to choose)
        other = REFERENCES[1 - REFERENCES.index(reference)]
        part["summary_" + other] = summary(selection_table(frame, other)).to_dict(
            orient="records")
        if role == "choose":
            chosen = choose_objective(overview)
            part["chosen"] = chosen
        else:
            row = overview[overview["objective"] == chosen].iloc[0]
            labelfree = overview[~overview["oracle"]].reset_index(drop=True)
            part["chosen_on_choose_set"] = chosen
            part["chosen_mean_gap_points"] = float(row["mean_gap_points"])
            part["chosen_rank"] = int(labelfree.index[labelfree["objective"] == chosen][0]) + 1
            part["confirmed"] = bool(row["mean_gap_points"] >= -GAP_GOAL_POINTS)
        result[role] = part
    return result


def format_summary(records: list[dict[str, Any]]) -> str:
    """Markdown of a :func:`summary` (as stored in the JSON)."""
    lines = ["| objective | oracle | mean rho | mean gap (points) | worst gap | problems | "
             "trials |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        lines.append(f"| `{r['objective']}` | {'yes' if r['oracle'] else ''} | "
                     f"{r['mean_spearman']:+.2f} | {r['mean_gap_points']:+.1f} | "
                     f"{r['worst_gap_points']:+.1f} | {r['n_problems']} | {r['n_trials']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI (see the module docstring); exit 2 on unreadable or empty searches."""
    parser = argparse.ArgumentParser(prog="search/selection_study.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("log_dirs", nargs="*", help="finished searches: one rho table each")
    parser.add_argument("--choose", nargs="+", metavar="DIR", default=None,
                        help="searches to choose the default objective on (reference: "
                        "target validation accuracy)")
    parser.add_argument("--confirm", nargs="+", metavar="DIR", default=None,
                        help="other searches to confirm it on (reference: target test accuracy)")
    parser.add_argument("--json", metavar="FILE", default=None, help="write the study here")
    args = parser.parse_args(argv)
    if not args.log_dirs and not args.choose:
        parser.error("give log folders, or --choose DIR... [--confirm DIR...]")
    for log_dir in args.log_dirs:
        print(f"== {log_dir}")
        print(objective_study(log_dir).to_string(index=False))
    if args.choose:
        try:
            result = choose_and_confirm(args.choose, args.confirm)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for role in ("choose", "confirm"):
            if role in result:
                part = result[role]
                print(f"== {role}: {part['n_trials']} trials of {', '.join(part['problems'])}, "
                      f"reference {part['reference']}")
                print(format_summary(part["summary"]))
        print(f"chosen: {result['choose']['chosen']}"
              + (f"; on the confirm set its mean gap is "
                 f"{result['confirm']['chosen_mean_gap_points']:+.1f} points (rank "
                 f"{result['confirm']['chosen_rank']})" if "confirm" in result else ""))
        if args.json:
            write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
