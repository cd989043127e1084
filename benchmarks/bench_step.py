"""Training step rate of every precision x memory layout x compile variant, in one interleaved run.

The steps are the trial's own (``training.trainer.Trainer.train_epoch``: gather, joint forward,
losses, backward, Adam, one-cycle, device-side bookkeeping), on a subset of the embedded
benchmark (the rows of a real benchmark, so the data are as in a trial). For each problem every
variant gets its own trainer; after a warm-up epoch (which includes ``torch.compile``'s
compilation) the variants take turns, one epoch of ``--steps`` steps each, ``--rounds`` times,
so that load from other processes affects all alike. Printed per variant: median ms per step
(from the epochs' ``train_compute_s``), source images/s, speed-up over fp32, the warm-up time.

Variants: ``fp32`` (eager NCHW), ``auto`` (what ``precision=auto`` resolves to on this machine,
printed beside it; :mod:`training.compute_path`), ``cl`` (channels_last), ``bf16`` (autocast),
``bf16+cl``, ``compile``, ``compile+cl``, ``bf16+compile+cl`` (each but ``auto`` on fp32
unless it names bf16).

Example (2 CPU cores)::

    python benchmarks/bench_step.py --threads 2
    python benchmarks/bench_step.py --problems mmd_deepmerge --variants fp32 compile+cl
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from galaxies.benchmark import ensure_benchmark
from galaxies.datasets import load_benchmark
from galaxies.schema import DomainData, domain_paths, load_domain_arrays, write_domain
from training.naming import problem_config
from training.trainer import Trainer

VARIANTS = {
    "fp32": ["precision=fp32"],
    "auto": ["precision=auto"],
    "cl": ["precision=fp32", "channels_last=1"],
    "bf16": ["precision=bf16"],
    "bf16+cl": ["precision=bf16", "channels_last=1"],
    "compile": ["precision=fp32", "compile=1"],
    "compile+cl": ["precision=fp32", "compile=1", "channels_last=1"],
    "bf16+compile+cl": ["precision=bf16", "compile=1", "channels_last=1"],
}
DEFAULT_PROBLEMS = ("none_deepmerge", "mmd_deepmerge", "dann_deepmerge", "coral_deepmerge",
                    "none_resnet", "mmd_resnet", "dann_resnet")
#: ``--problems all``: every registered problem of both backbones.
ALL = "all"


def subset_benchmark(data_dir: str, out: Path, rows: int, seed: int = 0) -> Path:
    """``rows`` random rows of each domain of ``data_dir`` (all splits kept) written to ``out``."""
    rng = np.random.default_rng(seed)
    for domain, path in domain_paths(data_dir).items():
        data = load_domain_arrays(path)
        pick = np.sort(rng.choice(len(data), size=min(rows, len(data)), replace=False))
        write_domain(domain_paths(out)[domain], DomainData(
            images=data.images[pick], labels=data.labels[pick],
            galaxy_id=data.galaxy_id[pick], split=data.split[pick], attrs=data.attrs))
    return out


def cpu_name() -> str:
    """The CPU model and its bf16 features as ``lscpu`` shows them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), []))
    bf16 = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{model} ({', '.join(bf16) or 'no AVX512-BF16/AMX'})"


def bench_problem(problem: str, data_dir: Path, variants: list[str], steps: int, rounds: int,
                  batch_size: int | None) -> dict[str, dict[str, float]]:
    """Per variant: median seconds per step, warm-up seconds, batch size."""
    bench = load_benchmark(data_dir)
    trainers, warmup = {}, {}
    for name in variants:
        sets = [f"max_batches_per_epoch={steps}", f"epochs={rounds + 1}", *VARIANTS[name]]
        if batch_size:
            sets.append(f"batch_size={batch_size}")
        trainer = Trainer(problem_config(problem, sets), bench, torch.device("cpu"))
        tick = time.perf_counter()
        trainer.train_epoch(0)
        warmup[name] = time.perf_counter() - tick
        trainers[name] = trainer
    per_step: dict[str, list[float]] = {name: [] for name in variants}
    for epoch in range(1, rounds + 1):
        for name, trainer in trainers.items():
            row = trainer.train_epoch(epoch)
            per_step[name].append(row["train_compute_s"] / row["train_steps"])
    return {name: {"step_s": statistics.median(times), "warmup_s": warmup[name],
                   "batch": trainers[name].config.batch_size,
                   "path": trainers[name].path}
            for name, times in per_step.items()}


def main() -> None:
    """Print one block of figures per problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data folder (default: embedded benchmark)")
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS),
                        help=f"problem names, or {ALL!r} for every registered problem")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per variant")
    parser.add_argument("--rows", type=int, default=1500, help="rows per domain of the subset")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    from training.denormals import flush_denormals

    flush_denormals()  # before torch's thread pool exists: every thread flushes
    torch.set_num_threads(args.threads)
    if args.problems == [ALL]:
        from problems import problem_names

        args.problems = problem_names()
    data_dir = args.data or str(ensure_benchmark())
    print(f"torch {torch.__version__}, CPU {cpu_name()}, threads {torch.get_num_threads()}, "
          f"{args.steps} steps x {args.rounds} rounds per variant")
    with tempfile.TemporaryDirectory() as tmp:
        subset = subset_benchmark(data_dir, Path(tmp), args.rows)
        for problem in args.problems:
            figures = bench_problem(problem, subset, args.variants, args.steps, args.rounds,
                                    args.batch_size)
            base = figures.get("fp32", next(iter(figures.values())))["step_s"]
            print(f"\n{problem} (batch {next(iter(figures.values()))['batch']} source"
                  f"{' + target' if not problem.startswith('none') else ''})")
            for name, row in figures.items():
                path = row["path"]
                resolved = (f"  = {path.precision}{' + cl' if path.channels_last else ''}"
                            f"{' + compile' if path.compile else ''}") if name == "auto" else ""
                print(f"  {name:16s} {1000 * row['step_s']:8.1f} ms/step  "
                      f"{row['batch'] / row['step_s']:7.0f} source img/s  "
                      f"x{base / row['step_s']:.2f}  (warm-up {row['warmup_s']:.1f} s)"
                      f"{resolved}", flush=True)


if __name__ == "__main__":
    main()
