"""training.denormals: subnormal floats flushed to zero on every CPU thread of a trial.

Each check runs in a fresh interpreter, since flush-to-zero is per thread and intra-op
threads take it only when they are created after it (the pytest process has its pool).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# torch.set_flush_denormal works on x86 (SSE3) and AArch64 only
pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in {"x86_64", "amd64", "aarch64", "arm64"},
    reason="flush-to-zero is supported on x86 and AArch64 CPUs only")


@pytest.fixture
def bench_denormals():
    """``benchmarks/bench_denormals.py`` as a module; it sets one thread and turns the flush
    off, so both are put back afterwards."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_denormals as module
    finally:
        sys.path.pop(0)
    threads = torch.get_num_threads()
    probe = torch.ones(1, dtype=torch.int32).view(torch.float32)  # the smallest subnormal
    flushing = bool((probe * 2.0).item() == 0.0)  # this thread's DAZ flag
    yield module
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flushing)


def _python(code: str, threads: int = 2) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_flush_before_the_pool_covers_every_thread():
    assert _python("from training.denormals import flushes_everywhere\n"
                   "print(flushes_everywhere())") == ["False"]  # torch's default: no flush
    out = _python("import torch\n"
                  "from training.denormals import flush_denormals, flushes_everywhere\n"
                  "print(flush_denormals())\n"
                  "torch.set_num_threads(2)\n"
                  "print(torch.get_num_threads(), flushes_everywhere())")
    assert out == ["True", "2", "True"]


def test_the_check_sees_threads_made_before_the_flush():
    """Pool first: only the calling thread flushes, and flush_denormals says so."""
    out = _python("import torch\n"
                  "from training.denormals import flush_denormals\n"
                  "torch.set_num_threads(2)\n"
                  "(torch.ones(1 << 18) * 2).sum()\n"
                  "print(flush_denormals())")
    assert out == ["False"]


def test_a_flushed_convolution_reads_subnormal_weights_as_zero():
    out = _python("import torch\n"
                  "from training.denormals import flush_denormals\n"
                  "w = torch.full((8, 8, 3, 3), 1e-39)\n"  # subnormal in fp32
                  "x = torch.randn(2, 8, 5, 5)\n"
                  "print(int(torch.count_nonzero(torch.nn.functional.conv2d(x, w))))\n"
                  "flush_denormals()\n"
                  "print(int(torch.count_nonzero(torch.nn.functional.conv2d(x, w))))", 1)
    assert int(out[0]) == 2 * 8 * 3 * 3 and out[1] == "0"


def test_a_two_thread_trial_records_the_flush(tiny_domain_pair, tmp_path):
    """training/train.py flushes before it sets its threads; the record says so."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "training/train.py", "--problem", "none_deepmerge", "--data",
         str(tiny_domain_pair), "--out", str(tmp_path / "t"), "--threads", "2", "--quiet",
         "--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--set", "batch_size=16"],
        cwd=REPO, env=env, text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "t" / "record.json").read_text())
    assert record["compute_path"]["flush_denormal"] is True


TINY_TRIAL = ["--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--set", "batch_size=16"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity")
                    else (os.cpu_count() or 1) < 2,
                    reason="one core: a trial has one thread, nothing to check")
@pytest.mark.parametrize("command", [
    ["search/seeds.py", "--seeds", "1", "--out", "{out}"],
    ["search/run.py", "--max-evals", "1", "--log-dir", "{out}"],
], ids=["seeds", "search"])
def test_a_search_or_seed_trial_flushes_on_all_its_threads(command, tiny_domain_pair, tmp_path):
    """One worker with every core. ``seeds``: one seed runs in the process (the serial
    evaluator's thread), as the paper study runs its seeds. ``search``: a worker forked by the
    process evaluator; the driver must not start torch's OpenMP threads before it forks (the
    child's first parallel region then hangs, measured with a flush in the driver: the reason
    why only the workers flush, in ``search.runner``; such a hang fails here as a timeout).
    Each trial records the flush on all its threads. The ``seeds`` case forks nothing, so it
    cannot catch a flush added to ``search/seeds.py``'s ``main`` (that hang needs two or more
    workers of two or more threads each)."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # every core
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, *(str(out) if a == "{out}" else a for a in command), "--problem",
            "none_deepmerge", "--data", str(tiny_domain_pair), "--evaluator", "process",
            "--workers", "1", "--quiet", *TINY_TRIAL]
    done = subprocess.run(argv, cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    records = [json.loads(p.read_text()) for p in out.rglob("record.json")]
    assert len(records) == 1 and records[0]["status"] == "ok", records
    assert records[0]["compute_path"]["flush_denormal"] is True


def test_a_trainer_built_after_the_pool_warns_and_records_it(tiny_domain_pair):
    """Too late (the pool exists): the record says False and a DenormalWarning names the fix."""
    out = _python("import sys, warnings, torch\n"
                  "torch.set_num_threads(2)\n"
                  "(torch.ones(1 << 18) * 2).sum()\n"  # a parallel op: the pool exists now
                  "from galaxies.datasets import load_benchmark\n"
                  "from training.naming import problem_config\n"
                  "from training.trainer import Trainer\n"
                  "with warnings.catch_warnings(record=True) as caught:\n"
                  "    warnings.simplefilter('always')\n"
                  "    t = Trainer(problem_config('none_deepmerge', ['epochs=1']),\n"
                  f"                load_benchmark({str(tiny_domain_pair)!r}),\n"
                  "                torch.device('cpu'))\n"
                  "print(t.path.flush_denormal)\n"
                  "print(*[w.category.__name__ for w in caught"
                  " if 'call it first thing in the process' in str(w.message)])")
    assert out == ["False", "DenormalWarning"]


def test_the_flag_stays_out_of_the_resume_fingerprint(tiny_domain_pair):
    """A checkpoint written before the flush existed (or without it) is continued with it."""
    from dataclasses import replace

    from galaxies.datasets import load_benchmark
    from training.naming import problem_config
    from training.resume import resume_fingerprint
    from training.trainer import Trainer

    config = problem_config("none_deepmerge", ["epochs=1", "batch_size=16"])
    trainer = Trainer(config, load_benchmark(tiny_domain_pair), torch.device("cpu"))
    record = {"data": {"source_attrs": {}, "target_attrs": {}}}
    before = resume_fingerprint(trainer, "none_deepmerge", record)
    trainer.path = replace(trainer.path, flush_denormal=not trainer.path.flush_denormal)
    assert resume_fingerprint(trainer, "none_deepmerge", record) == before
    trainer.path = replace(trainer.path, channels_last=not trainer.path.channels_last)
    assert resume_fingerprint(trainer, "none_deepmerge", record) != before


def test_the_benchmark_times_every_layer_and_reads_a_trials_weights(tmp_path, capsys,
                                                                   bench_denormals):
    # built from bit patterns: a flushed thread would turn a float literal 1e-39 into 0
    model = {f"backbone.net.{name}.1.conv2.weight":
             torch.full((c, c, 3, 3), 1000, dtype=torch.int32).view(torch.float32)
             for name, c, _ in bench_denormals.LAYERS}
    torch.save({"trainer": {"model": model}}, tmp_path / "resume.pt")
    bench_denormals.main(["--resume", str(tmp_path / "resume.pt"), "--batch", "1",
                          "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(bench_denormals.LAYERS)
    assert all("subnormal 100.0 %" in line for line in lines[1:])
    values = torch.tensor([0, 1000, 1065353216, -2147482648], dtype=torch.int32)  # 0, 1.4e-42,
    assert bench_denormals.subnormal_share(values.view(torch.float32)) == 0.5  # 1.0, -1.4e-42


def test_the_benchmark_times_a_linear_weight_of_a_checkpoint(tmp_path, capsys,
                                                            bench_denormals):
    half = torch.full((4, 8), 1000, dtype=torch.int32).view(torch.float32)  # 1.4e-42
    weight = torch.cat([half, torch.ones(4, 8)])  # half of its values subnormal
    torch.save({"model": {"head.classifier.0.weight": weight,
                          "backbone.conv.weight": torch.ones(2, 2, 3, 3)}},
               tmp_path / "checkpoint.pt")
    bench_denormals.main(["--linear", str(tmp_path / "checkpoint.pt"),
                          "head.classifier.0.weight", "--batch", "2", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "(8, 8): subnormal  50.0 %" in lines[1]
    assert "flushed" in lines[1] and "bf16 autocast" in lines[1]
    with pytest.raises(SystemExit, match=r"no linear weight 'backbone.conv.weight'.*"
                                         r"\['head.classifier.0.weight'\]"):
        bench_denormals.main(["--linear", str(tmp_path / "checkpoint.pt"),
                              "backbone.conv.weight"])
