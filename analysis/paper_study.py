"""The paper at full scale (issue 25): one resumable command, stage by stage.

Usage::

    python analysis/paper_study.py                  # every stage below, resuming finished work
    python analysis/paper_study.py --dry-run        # the commands, nothing run
    python analysis/paper_study.py --only mmd_deepmerge dann_deepmerge

Stages (each one the documented CLI, run as a subprocess; rerunning skips what is finished):

1. **Development data**: generator v4, development data seed 2, 3000 mergers (600 systems) +
   2700 non-mergers (``data/benchmark-v4-seed2-dev``), simulated when missing. Every choice of
   the study (search, selection) reads its *validation* splits only.
2. **Searches**, as the paper did: DeepHyper CBO with successive halving (``--stopper sha``),
   the default label-free objective, the paper budget (30 full epochs; the stopping rule of
   ``training.config``'s default), two trials at a time: :data:`SEARCHES` trials per problem
   (DeepMerge no-DA, MMD, DANN: 30; ResNet18 MMD, DANN: 10 on a CPU).
3. **Search records** under ``--reports/searches/<problem>/``: ``results.csv``, ``search.json``
   and every trial's ``record.json`` (JSON only, no checkpoint), plus ``selection.json``: the
   label-free pick against the oracle pick (highest *target validation* accuracy, read for
   reporting only, never for a choice) and their gap.

Training folders (checkpoints included) go to ``--runs`` (default ``runs/paper``, ignored by
git); the command commits nothing. Exit status: 0 every stage done; 1 a stage failed; 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = "data/benchmark-v4-seed2-dev"
DEV_SIMULATION = ("--n-mergers", "3000", "--n-nonmergers", "2700", "--seed", "2")
#: Trials per search (DeepMerge as the issue asks, ResNet18 at the CPU's least).
SEARCHES = {"none_deepmerge": 30, "mmd_deepmerge": 30, "dann_deepmerge": 30,
            "mmd_resnet": 10, "dann_resnet": 10}
SEARCH_ARGS = ("--budget", "paper", "--stopper", "sha", "--search", "cbo", "--seed", "42",
               "--evaluator", "process")


def search_command(problem: str, runs: Path, data: str, workers: int) -> list[str]:
    """The ``search/run.py`` command of one problem's search (``--resume``: skips done work)."""
    return [sys.executable, "search/run.py", "--problem", problem, "--data", data,
            "--log-dir", str(runs / "search" / problem), "--max-evals", str(SEARCHES[problem]),
            *SEARCH_ARGS, "--workers", str(workers), "--resume", "--quiet"]


def selection_gap(log_dir: Path) -> dict[str, Any]:
    """The label-free pick of a search against its oracle pick (target validation labels).

    Both picks are among the trials that ran the whole schedule (``ok``); the gap is the
    oracle's target validation accuracy minus the label-free pick's, in points.
    """
    from search.results import load_search
    from search.selection import rank_trials

    frame = load_search(log_dir)
    picks = {}
    for name, strategy in (("label_free", "search"), ("oracle", "target_val_accuracy")):
        ranked = rank_trials(frame, strategy)
        if ranked.empty:
            raise ValueError(f"{log_dir}: no trial ran the whole schedule")
        row = ranked.iloc[0]
        picks[name] = {"job_id": int(row["job_id"]), "score": float(row["score"]),
                       **{f"{d}_val_accuracy": 100 * float(row[f"{d}_val_accuracy"])
                          for d in ("source", "target")}}
    counts = frame["status"].value_counts().to_dict()
    return {"trials": len(frame), "status_counts": {k: int(v) for k, v in counts.items()},
            "label_free_strategy": "search (the search's own objective)",
            "oracle_strategy": "target_val_accuracy (reporting only)", **picks,
            "gap_target_val_points": picks["oracle"]["target_val_accuracy"]
            - picks["label_free"]["target_val_accuracy"]}


def copy_search(log_dir: Path, out: Path) -> None:
    """``results.csv``, ``search.json`` and each trial's ``record.json`` (no checkpoints)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "search.json"):
        shutil.copy2(log_dir / name, out / name)
    for record in sorted((log_dir / "trials").glob("*/record.json")):
        target = out / "trials" / record.parent.name / "record.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, target)
    (out / "selection.json").write_text(json.dumps(selection_gap(log_dir), indent=1) + "\n")


def run(command: list[str], log: Path | None = None) -> int:
    """Run one stage's command from the repository root; its output to ``log`` if given."""
    print("$ " + shlex.join(c if c != sys.executable else "python" for c in command), flush=True)
    if log is None:
        return subprocess.call(command, cwd=REPO)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        return subprocess.call(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``analysis/paper_study.py``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="analysis/paper_study.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/paper"),
                        help="training folders (default runs/paper)")
    parser.add_argument("--reports", type=Path, default=Path("reports/paper"),
                        help="committed records and tables (default reports/paper)")
    parser.add_argument("--only", nargs="+", choices=list(SEARCHES), metavar="PROBLEM",
                        help="these problems only")
    parser.add_argument("--workers", type=int, default=2, help="trials at once (default 2)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    problems = args.only or list(SEARCHES)
    runs, reports = REPO / args.runs, REPO / args.reports  # an absolute path stays itself
    simulate = [sys.executable, "galaxies/simulate.py", "--out", DEV_DATA, *DEV_SIMULATION,
                "--workers", str(args.workers), "--quiet"]
    searches = {p: search_command(p, args.runs, DEV_DATA, args.workers) for p in problems}
    if args.dry_run:
        for command in (simulate, *searches.values()):
            print(shlex.join(c if c != sys.executable else "python" for c in command))
        return 0
    status = 0
    if not (REPO / DEV_DATA / "target.h5").is_file() and run(simulate) != 0:
        return 1
    for problem, command in searches.items():
        tick = time.monotonic()
        code = run(command, runs / f"search_{problem}.log")
        print(f"search {problem}: exit {code} after {(time.monotonic() - tick) / 60:.1f} min",
              flush=True)
        if code != 0:
            status = 1
            continue
        copy_search(runs / "search" / problem, reports / "searches" / problem)
    return status


if __name__ == "__main__":
    sys.exit(main())
