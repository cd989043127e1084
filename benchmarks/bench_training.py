"""Training throughput, share of step time outside forward/backward, and peak memory.

Runs real trials through ``training.loop.run_trial`` (the same code a search runs) for a
few batches per epoch and prints, per backbone x method:

- source images/s over the training phase (data indexing and bookkeeping included);
- the share of training-phase time spent outside forward/backward/optimiser steps;
- the time per epoch spent on source-validation evaluation (early-stopping signal);
- peak resident memory of the process (and peak CUDA memory on a GPU).

Example (2 CPU cores)::

    python benchmarks/bench_training.py --threads 2 --max-batches 20
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch

from galaxies.benchmark import ensure_benchmark
from training.loop import run_trial
from training.naming import problem_config

DEFAULT_PROBLEMS = (
    "none_deepmerge",
    "mmd_deepmerge",
    "dann_deepmerge",
    "none_resnet",
    "mmd_resnet",
)


def bench(problem: str, data_dir: str, max_batches: int, epochs: int, batch_size: int | None):
    """Run one short trial and return its throughput figures."""
    overrides = [f"max_batches_per_epoch={max_batches}", f"epochs={epochs}", "patience=100"]
    if batch_size:
        overrides.append(f"batch_size={batch_size}")
    config = problem_config(problem, overrides)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        tick = time.perf_counter()
        record = run_trial(config, data_dir, out, problem=problem, progress=False)
        wall = time.perf_counter() - tick
    if record["status"] != "ok":
        raise SystemExit(f"{problem}: trial failed: {record['error']}")
    history = record["history"][1:] or record["history"]  # first epoch warms up
    steps = sum(row["train_steps"] for row in history)
    train_s = sum(row["train_time_s"] for row in history)
    compute_s = sum(row["train_compute_s"] for row in history)
    eval_s = sum(row["epoch_time_s"] - row["train_time_s"] for row in history) / len(history)
    return {
        "problem": problem,
        "device": record["device"],
        "batch": config.batch_size,
        "source_img_per_s": steps * config.batch_size / train_s,
        "outside_fwd_bwd_pct": 100 * (1 - compute_s / train_s),
        "val_eval_s_per_epoch": eval_s,
        "trial_wall_s": wall,
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else None,
    }


def main() -> None:
    """Print one line of figures per problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data folder (default: embedded benchmark)")
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batches", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    from training.denormals import flush_denormals

    flush_denormals()  # before torch's thread pool exists: every thread flushes
    torch.set_num_threads(args.threads)
    data_dir = args.data or str(ensure_benchmark())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, data {data_dir}")
    for problem in args.problems:
        row = bench(problem, data_dir, args.max_batches, args.epochs, args.batch_size)
        peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{row['problem']:16s} {row['device']:5s} batch {row['batch']:4d}  "
            f"{row['source_img_per_s']:8.1f} source img/s  "
            f"outside fwd/bwd {row['outside_fwd_bwd_pct']:5.1f}%  "
            f"val eval {row['val_eval_s_per_epoch']:6.2f} s/epoch  "
            f"peak RSS so far {peak_rss_mib:7.0f} MiB"
            + (f"  peak CUDA {row['peak_cuda_mib']:.0f} MiB" if row["peak_cuda_mib"] else "")
        )


if __name__ == "__main__":
    main()
