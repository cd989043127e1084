r"""End-to-end wall time of full-length trials: fp32 against ``auto``, two side by side.

Each trial is a real ``training/train.py`` process (start-up, data loading, training, scoring and
writing included) at the problem's default configuration on ``--data`` (default: the embedded
benchmark). Runs, one after the other:

- ``single``: one trial per ``--paths`` entry (``fp32``, ``auto``) with ``--threads`` torch
  threads (default 2, the whole machine);
- ``pair``: two ``auto`` trials (seeds 1 and 2) at the same time with one thread each (how a
  search or a seed study uses two cores).

Prints and writes (``--out``, JSON) each trial's wall time, epochs run, median training time
per epoch and the resolved compute path, plus the machine. Example::

    python benchmarks/bench_trial.py --problem mmd_deepmerge --out benchmarks/records/trial_e2e.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from training.compute_path import machine

REPO = Path(__file__).resolve().parent.parent


def start(problem: str, data: str | None, path: str, seed: int, threads: int, out: Path,
          extra: list[str]) -> subprocess.Popen:
    """A ``train.py`` process for one trial (its stdout/stderr in ``<out>.log`` beside it)."""
    command = [sys.executable, "training/train.py", "--problem", problem, "--out", str(out),
               "--seed", str(seed), "--threads", str(threads), "--quiet",
               "--set", f"precision={path}"]
    command += ["--data", data] if data else []
    for item in extra:
        command += ["--set", item]
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log = open(out.parent / f"{out.name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def summary(out: Path, wall: float, label: str) -> dict:
    """What one finished trial took (from its record)."""
    record = json.loads((out / "record.json").read_text())
    if record["status"] != "ok":
        raise SystemExit(f"error: {label} failed: {record.get('error')}")
    epochs = [row["train_time_s"] for row in record["history"]]
    return {"label": label, "wall_s": round(wall, 1), "epochs_run": record["epochs_run"],
            "best_epoch": record["best_epoch"],
            "median_epoch_train_s": round(statistics.median(epochs), 2),
            "compute_path": record.get("compute_path"),
            "source_val_accuracy": record["metrics"]["source_val"]["accuracy"],
            "target_val_accuracy": record["metrics"]["target_val"]["accuracy"]}


def main(argv: list[str] | None = None) -> int:
    """Run the trials and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="mmd_deepmerge")
    parser.add_argument("--data", default=None, help="data folder (default: embedded benchmark)")
    parser.add_argument("--paths", nargs="+", default=["auto", "fp32"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["single", "pair"],
                        choices=["single", "pair"])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra hyperparameters (repeatable)")
    parser.add_argument("--out", default=None, help="JSON file for the figures")
    args = parser.parse_args(argv)
    result = {"machine": machine(torch.device("cpu")), "problem": args.problem,
              "data": args.data or "embedded benchmark", "overrides": args.overrides,
              "command": " ".join(["python", "benchmarks/bench_trial.py", *(argv or sys.argv[1:])]),
              "date": time.strftime("%Y-%m-%d"), "trials": []}
    print(f"{result['machine']}, {args.problem}")
    with tempfile.TemporaryDirectory() as tmp:
        if "single" in args.modes:
            for path in args.paths:
                out = Path(tmp) / f"single_{path}"
                tick = time.perf_counter()
                proc = start(args.problem, args.data, path, 1, args.threads, out, args.overrides)
                proc.wait()
                row = summary(out, time.perf_counter() - tick,
                              f"{path}, {args.threads} threads")
                result["trials"].append(row)
                print(json.dumps(row), flush=True)
        if "pair" in args.modes:
            tick = time.perf_counter()
            procs = {seed: start(args.problem, args.data, "auto", seed, 1,
                                 Path(tmp) / f"pair_{seed}", args.overrides) for seed in (1, 2)}
            walls = {}
            for seed, proc in procs.items():
                proc.wait()
                walls[seed] = time.perf_counter() - tick
            for seed in procs:
                row = summary(Path(tmp) / f"pair_{seed}", walls[seed],
                              f"auto, 1 thread, side by side (seed {seed})")
                result["trials"].append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
