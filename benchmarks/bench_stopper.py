r"""A search with and without a stopper: epochs consumed, best objective, what each one picks.

Runs the same random search twice (same seed, so the same configurations in the same order):
once with ``--stopper none`` and once with ``--stopper sha`` (or ``--stopper`` of your choice),
then reports for each: trials, epochs consumed (sum of ``epochs_run`` over the records), wall
time, the best objective among trials that ran to the end, and the source/target *test*
accuracy of the configuration it picks (reported, never used to choose). Finally the paired
comparison of the two picks on the target test set (``analysis/compare.py``: Δ with its 95 %
cluster-bootstrap interval).

Example (2 CPU cores, two trials at a time)::

    python benchmarks/bench_stopper.py --data data/benchmark-v3-seed1 --out runs/bench/stopper \
        --max-evals 30 --set epochs=9 --set max_batches_per_epoch=10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from search.results import load_search

REPO = Path(__file__).resolve().parent.parent


def run_search(log_dir: Path, stopper: str, args: argparse.Namespace) -> float:
    """One search (resumed if ``log_dir`` holds part of it); its wall time in seconds."""
    command = [sys.executable, "search/run.py", "--problem", args.problem, "--search", "random",
               "--seed", str(args.seed), "--max-evals", str(args.max_evals),
               "--log-dir", str(log_dir), "--stopper", stopper, "--workers",
               str(args.workers), "--quiet"]
    command += ["--data", args.data] if args.data else []
    for item in args.overrides:
        command += ["--set", item]
    if (log_dir / "results.csv").is_file():
        command.append("--resume")
    tick = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    return time.perf_counter() - tick


def summarise(log_dir: Path, stopper: str, wall: float) -> dict:
    """Epochs consumed, best objective and the pick's test accuracies of one search."""
    frame = load_search(log_dir)
    done = frame[frame["status"] == "ok"]
    best = done.sort_values(["objective", "job_id"], ascending=[False, True]).iloc[0]
    return {
        "stopper": stopper, "trials": len(frame), "ran_to_end": len(done),
        "stopped": int((frame["status"] == "stopped").sum()),
        "failed": int((~frame["status"].isin(["ok", "stopped"])).sum()),
        "epochs": int(frame["epochs_run"].fillna(0).sum()), "wall_s": round(wall),
        "best_job": int(best["job_id"]), "best_objective": float(best["objective"]),
        "pick_source_test_acc": float(best["source_test_accuracy"]),
        "pick_target_test_acc": float(best["target_test_accuracy"]),
        "pick_trial_dir": best["trial_dir"],
    }


def main() -> None:
    """Run both searches, print the comparison, write ``<out>/stopper.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=None)
    parser.add_argument("--problem", default="mmd_deepmerge")
    parser.add_argument("--stopper", default="sha")
    parser.add_argument("--max-evals", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for stopper in ("none", args.stopper):
        log_dir = out / stopper
        wall = run_search(log_dir, stopper, args)
        rows.append(summarise(log_dir, stopper, wall))
    table = pd.DataFrame(rows).drop(columns="pick_trial_dir")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False))
    print(f"epochs with {args.stopper} / without: {rows[1]['epochs'] / rows[0]['epochs']:.3f}")
    compare = None
    if rows[0]["best_job"] != rows[1]["best_job"]:
        proc = subprocess.run([sys.executable, "analysis/compare.py", rows[0]["pick_trial_dir"],
                               rows[1]["pick_trial_dir"]], cwd=REPO, capture_output=True,
                              text=True, check=False)
        compare = proc.stdout
        print(proc.stdout)
    else:
        print("both searches pick the same configuration")
    (out / "stopper.json").write_text(json.dumps({"rows": rows, "compare": compare,
                                                  "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
