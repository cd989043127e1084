"""The GPU benchmark suite: one prepared run (≤ 8 minutes on one H100-class GPU).

Measures, on the trial's own training code (``training.trainer.Trainer``), data resident on the
device:

1. **single**: source images/s of one trial of every problem (every registered method ×
   backbone), fp32 and bf16 autocast (and bf16 + ``torch.compile`` for DeepMerge MMD).
2. **syncs**: host synchronisations per training step of ``mmd_deepmerge``, counted by CUDA's
   own sync debug mode (``torch.cuda.set_sync_debug_mode("warn")``); the loop's look at its
   finiteness flag every ``FINITE_CHECK_EVERY`` steps is the only one expected.
3. **packed**: K trials at once on the one GPU (K separate processes, as Ray's evaluator runs
   them with ``--gpus-per-trial 1/K``), aggregate source images/s for K = 1, 2, 4, 8.
4. **mmd**: the MMD's share of a DeepMerge DA step (``benchmarks/bench_mmd.py --device cuda``).
5. **ray**: a 4-trial search with ``--evaluator ray --gpus-per-trial 0.25`` (trials packed on
   the GPU by Ray), its wall time.

Writes ``<out>/gpu_suite.json`` (every figure) and ``<out>/gpu_suite.txt`` (the printed
lines). Without ``--data`` it simulates a full-size benchmark first (~20 s on 16 cores).

``--dry-run`` runs every stage on the CPU at toy sizes (2 steps of 4 images, K = 1, 2; stages that
need CUDA are marked skipped), so the test suite checks the script itself::

    python benchmarks/gpu_suite.py --out $OUT                       # on the GPU machine
    python benchmarks/gpu_suite.py --dry-run --data DIR --out /tmp/x  # anywhere
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from problems import problem_names

REPO = Path(__file__).resolve().parent.parent
LINES: list[str] = []


def say(text: str) -> None:
    """Print and keep a line for ``gpu_suite.txt``."""
    print(text, flush=True)
    LINES.append(text)


#: ``--set`` values added to every trainer (the dry run shrinks the batches).
EXTRA_SETS: list[str] = []


def make_trainer(problem: str, data_dir: str, device: str, sets: list[str]) -> Any:
    """A trial's trainer (data moved to ``device``) for ``problem`` with ``--set`` values."""
    from galaxies.datasets import load_benchmark
    from training.naming import problem_config
    from training.trainer import Trainer

    config = problem_config(problem, [*sets, *EXTRA_SETS, f"device={device}"])
    return Trainer(config, load_benchmark(data_dir), torch.device(device))


def synchronize(device: str) -> None:
    """Wait for the device (no-op on the CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_epoch(trainer: Any, epoch: int) -> tuple[float, int]:
    """(seconds, steps) of one training epoch, device work included."""
    synchronize(str(trainer.device))
    tick = time.perf_counter()
    row = trainer.train_epoch(epoch)
    synchronize(str(trainer.device))
    return time.perf_counter() - tick, row["train_steps"]


def stage_single(data_dir: str, device: str, steps: int,
                 problems: list[str]) -> list[dict[str, Any]]:
    """Source images/s of one trial of each problem, fp32 and bf16 (compile: on CUDA)."""
    rows = []
    for problem in problems:
        variants = {"fp32": [], "bf16": ["precision=bf16"]}
        if problem == "mmd_deepmerge" and device != "cpu":
            variants["bf16+compile"] = ["precision=bf16", "compile=1"]
        for name, knobs in variants.items():
            trainer = make_trainer(problem, data_dir, device,
                                   [f"max_batches_per_epoch={steps}", *knobs])
            timed_epoch(trainer, 0)  # warm-up (and compilation)
            seconds, n = timed_epoch(trainer, 1)
            rate = n * trainer.config.batch_size / seconds
            rows.append({"problem": problem, "variant": name, "batch": trainer.config.batch_size,
                         "steps": n, "source_img_per_s": rate})
            say(f"single  {problem:18s} {name:13s} batch {trainer.config.batch_size:4d}  "
                f"{rate:9.0f} source img/s")
            del trainer
    return rows


def stage_syncs(data_dir: str, device: str, steps: int) -> dict[str, Any]:
    """Host synchronisations in ``steps`` training steps (CUDA's sync debug mode)."""
    from training.trainer import FINITE_CHECK_EVERY

    trainer = make_trainer("mmd_deepmerge", data_dir, device,
                           [f"max_batches_per_epoch={steps}"])
    timed_epoch(trainer, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.train_epoch(1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    expected = steps // FINITE_CHECK_EVERY + 2  # the flag's looks, the epoch's means
    say(f"syncs   mmd_deepmerge: {syncs} host syncs in {steps} steps "
        f"(expected at most {expected}: the finiteness flag and the epoch means)")
    return {"steps": steps, "syncs": syncs, "expected_at_most": expected}


def _packed_worker(problem: str, data_dir: str, device: str, steps: int, barrier: Any,
                   queue: Any, extra_sets: list[str]) -> None:
    torch.set_num_threads(1)
    EXTRA_SETS[:] = extra_sets
    trainer = make_trainer(problem, data_dir, device, [f"max_batches_per_epoch={steps}"])
    timed_epoch(trainer, 0)
    barrier.wait()
    start = time.time()
    _, n = timed_epoch(trainer, 1)
    queue.put((start, time.time(), n * trainer.config.batch_size))


def stage_packed(data_dir: str, device: str, steps: int, ks: list[int],
                 problems: list[str]) -> list[dict[str, Any]]:
    """Aggregate source images/s of K trials sharing the device, one process each."""
    ctx = mp.get_context("spawn")
    rows = []
    for problem in problems:
        for k in ks:
            barrier, queue = ctx.Barrier(k), ctx.Queue()
            procs = [ctx.Process(target=_packed_worker,
                                 args=(problem, data_dir, device, steps, barrier, queue,
                                       list(EXTRA_SETS)))
                     for _ in range(k)]
            for proc in procs:
                proc.start()
            results = [queue.get(timeout=600) for _ in procs]
            for proc in procs:
                proc.join()
            wall = max(r[1] for r in results) - min(r[0] for r in results)
            rate = sum(r[2] for r in results) / wall
            rows.append({"problem": problem, "trials": k, "aggregate_img_per_s": rate,
                         "wall_s": wall})
            say(f"packed  {problem:18s} {k} trials: {rate:9.0f} source img/s in all "
                f"({rate / k:8.0f} per trial)")
    return rows


def stage_subprocess(name: str, command: list[str], timeout: int) -> dict[str, Any]:
    """Run a command, keep its output and wall time."""
    tick = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    wall = time.perf_counter() - tick
    for line in proc.stdout.strip().splitlines()[-12:]:
        say(f"{name:7s} {line}")
    if proc.returncode:
        say(f"{name:7s} exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return {"command": command, "exit": proc.returncode, "wall_s": wall,
            "stdout_tail": proc.stdout[-4000:]}


def simulate(out: Path) -> str:
    """A full-size benchmark in ``out`` (the default generator)."""
    subprocess.run([sys.executable, "galaxies/simulate.py", "--out", str(out), "--quiet"],
                   cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return str(out)


def main(argv: list[str] | None = None) -> int:
    """Run the stages; return 0 when every stage ran (skipped ones included)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_suite.json/.txt")
    parser.add_argument("--data", help="benchmark folder (default: simulate one)")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, toy sizes: checks the script, measures nothing useful")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per trial")
    parser.add_argument("--problems", nargs="+", default=None,
                        help="problems of the single-trial stage (default: every one)")
    args = parser.parse_args(argv)
    from training.denormals import flush_denormals

    flush_denormals()  # before torch's thread pool exists: every thread flushes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        parser.error("no CUDA device: run with --dry-run to check the script on the CPU")
    device = "cuda" if cuda else "cpu"
    steps = 2 if args.dry_run else args.steps
    if args.dry_run:
        EXTRA_SETS[:] = ["batch_size=4"]  # bf16 without bf16 hardware is slow: toy batches
    start = time.perf_counter()
    name = torch.cuda.get_device_name() if cuda else "cpu (dry run)"
    say(f"gpu_suite: torch {torch.__version__}, device {name}, steps {steps}")
    figures: dict[str, Any] = {"device": name, "torch": torch.__version__,
                               "dry_run": args.dry_run, "steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data or simulate(Path(tmp) / "data")
        figures["single"] = stage_single(data_dir, device, steps,
                                         args.problems or problem_names())
        figures["syncs"] = (stage_syncs(data_dir, device, steps) if cuda
                            else {"skipped": "needs CUDA's sync debug mode"})
        figures["packed"] = stage_packed(
            data_dir, device, steps, [1, 2] if args.dry_run else [1, 2, 4, 8],
            ["mmd_deepmerge"] if args.dry_run else ["mmd_deepmerge", "none_resnet"])
        mmd_args = (["--steps", "2", "--warmup", "1", "--batch", "8", "--threads", "1",
                     "--backbones"] if args.dry_run else ["--steps", "30", "--threads", "4"])
        figures["mmd"] = stage_subprocess("mmd", [sys.executable, "benchmarks/bench_mmd.py",
                                                  "--device", device, *mmd_args], timeout=300)
        if cuda:
            figures["ray"] = stage_subprocess("ray", [
                sys.executable, "search/run.py", "--problem", "mmd_deepmerge", "--data",
                data_dir, "--log-dir", str(Path(tmp) / "ray_search"), "--max-evals", "4",
                "--evaluator", "ray", "--workers", "4", "--gpus-per-trial", "0.25",
                "--set", "epochs=2", "--quiet"], timeout=300)
        else:
            figures["ray"] = {"skipped": "needs a GPU to pack trials on"}
    figures["wall_s"] = time.perf_counter() - start
    say(f"gpu_suite: done in {figures['wall_s']:.0f} s")
    (out / "gpu_suite.json").write_text(json.dumps(figures, indent=2))
    (out / "gpu_suite.txt").write_text("\n".join(LINES) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
