"""The fast training path: no host sync inside a step, precision and layout knobs, stoppers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

import training.kernel_mmd as kernel_mmd
import training.trainer as loop  # the trainer holds the step loop
from galaxies.datasets import load_benchmark
from search.run import main as search_main
from search.runner import EpochReporter
from search.stoppers import StopperError, build_stopper, check_stopper
from training.denormals import flushes_everywhere
from training.loop import run_trial
from training.naming import problem_config
from training.trainer import FINITE_CHECK_EVERY, Trainer

TINY = ["epochs=2", "max_batches_per_epoch=3", "batch_size=16"]


class CountHostReads(TorchDispatchMode):
    """Counts ``aten._local_scalar_dense`` (``.item()``, ``int(t)``, ``if t``: a device sync)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def host_reads_per_epoch(problem: str, data_dir, steps: int, monkeypatch) -> tuple[int, int]:
    """(host reads, steps) of one training epoch on the accelerator code path."""
    monkeypatch.setattr(kernel_mmd, "host_reads_are_free", lambda device: False)
    config = problem_config(problem, [f"max_batches_per_epoch={steps}", "batch_size=2"])
    trainer = Trainer(config, load_benchmark(data_dir), torch.device("cpu"))
    for name in ("optimizer", "scheduler"):  # Adam/OneCycle keep their step counts on the host
        step = getattr(trainer, name).step

        def outside(step=step):
            with _disable_current_modes():
                step()

        outside._wrapped_by_lr_sched = True  # what OneCycleLR's own wrapper sets

        monkeypatch.setattr(getattr(trainer, name), "step", outside)
    with CountHostReads() as counter:
        row = trainer.train_epoch(1)
    return counter.count, row["train_steps"]


@pytest.mark.parametrize("problem", ["mmd_deepmerge", "dann_deepmerge", "none_deepmerge"])
def test_no_host_sync_inside_a_step(problem, tiny_domain_pair, monkeypatch):
    assert FINITE_CHECK_EVERY >= 8  # a look every few steps: the tiny data needs fewer
    monkeypatch.setattr(loop, "FINITE_CHECK_EVERY", 4)
    few, few_steps = host_reads_per_epoch(problem, tiny_domain_pair, 3, monkeypatch)
    many, many_steps = host_reads_per_epoch(problem, tiny_domain_pair, 11, monkeypatch)
    assert (few_steps, many_steps) == (3, 11)
    # one look at the finiteness flag at the end of the epoch (+ one every 4 steps), no more
    assert few == 1
    assert many == 1 + 11 // 4


def test_accelerator_mmd_path_equals_the_cpu_path(monkeypatch):
    torch.manual_seed(0)
    fs, ft = torch.randn(20, 7, requires_grad=True), torch.randn(24, 7) + 0.5
    for bandwidths in ("family", "authors"):
        loss = kernel_mmd.MultiKernelMMD(bandwidths=bandwidths)
        cpu_value = loss(fs, ft)
        (cpu_grad,) = torch.autograd.grad(cpu_value, fs)
        with monkeypatch.context() as patch:
            patch.setattr(kernel_mmd, "host_reads_are_free", lambda device: False)
            device_value = loss(fs, ft)
            (device_grad,) = torch.autograd.grad(device_value, fs)
        torch.testing.assert_close(device_value, cpu_value, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(device_grad, cpu_grad, rtol=1e-5, atol=1e-9)


def test_nonfinite_loss_names_its_step(tiny_domain_pair, tmp_path):
    config = problem_config("mmd_deepmerge", [*TINY, "lr=1e30", "lambda_tl=1e30"])
    record = run_trial(config, tiny_domain_pair, tmp_path, progress=False)
    assert record["status"] == "failed" and record["failure"] == "F_nan"
    assert "non-finite loss at epoch 1 step" in record["error"]


def reference_view(record):
    return {k: record[k] for k in ("metrics", "diagnostics", "best_epoch")} | {
        "losses": [row["train_loss"] for row in record["history"]]}


@pytest.mark.parametrize("knobs", [["precision=bf16"], ["channels_last=1"]])
def test_knobs_keep_same_seed_same_numbers(knobs, tiny_domain_pair, tmp_path):
    config = problem_config("mmd_deepmerge", [*TINY, *knobs])
    first = run_trial(config, tiny_domain_pair, tmp_path / "a", progress=False)
    second = run_trial(config, tiny_domain_pair, tmp_path / "b", progress=False)
    assert first["status"] == "ok", first["error"]
    assert first["config"]["precision"] == config.precision
    assert reference_view(first) == reference_view(second)


def test_channels_last_computes_the_same_network(tiny_domain_pair, tmp_path):
    base = problem_config("none_deepmerge", [*TINY, "precision=fp32"])
    nchw = run_trial(base, tiny_domain_pair, tmp_path / "a", progress=False)
    nhwc = run_trial(base.replace(channels_last=1), tiny_domain_pair, tmp_path / "b",
                     progress=False)
    for a, b in zip(nchw["history"], nhwc["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)


def test_bf16_is_close_to_fp32(tiny_domain_pair, tmp_path):
    base = problem_config("none_deepmerge", [*TINY, "precision=fp32"])
    fp32 = run_trial(base, tiny_domain_pair, tmp_path / "a", progress=False)
    bf16 = run_trial(base.replace(precision="bf16"), tiny_domain_pair, tmp_path / "b",
                     progress=False)
    first_fp32, first_bf16 = fp32["history"][0]["train_loss"], bf16["history"][0]["train_loss"]
    assert first_bf16 != first_fp32  # autocast really ran in bf16
    assert first_bf16 == pytest.approx(first_fp32, rel=0.05)


# --- stoppers ------------------------------------------------------------------------------


def test_stopper_names_are_checked():
    assert build_stopper("none", 10) is None
    assert type(build_stopper("sha", 10)).__name__ == "SuccessiveHalvingStopper"
    assert type(build_stopper("median", 10)).__name__ == "MedianStopper"
    assert build_stopper("epochs-3", 10).stop_step == 3
    for bad in ("hyperband", "epochs-0", "epochs-10", "epochs-x"):
        with pytest.raises(StopperError):
            check_stopper(bad, 10)


class FakeJob:
    """A ``RunningJob`` stand-in whose stopper ends the trial after ``stop_at`` epochs."""

    def __init__(self, stop_at: int):
        self.stop_at, self.recorded = stop_at, []
        self.stopper = object()

    def record(self, budget, objective):
        self.recorded.append((budget, objective))

    def stopped(self):
        return len(self.recorded) >= self.stop_at


def test_trial_reports_each_epoch_and_stops(tiny_domain_pair, tmp_path):
    job = FakeJob(stop_at=2)
    reporter = EpochReporter(job, "source_val_acc_minus_mmd")
    config = problem_config("mmd_deepmerge", ["epochs=4", "max_batches_per_epoch=2",
                                              "batch_size=16", "patience=10"])
    record = run_trial(config, tiny_domain_pair, tmp_path, progress=False, on_epoch=reporter)
    assert [budget for budget, _ in job.recorded] == [1, 2]
    assert all(isinstance(value, float) for _, value in job.recorded)
    assert record["status"] == "stopped" and record["epochs_run"] == 2
    assert record["metrics"]["target_test"]["accuracy"] is not None  # still evaluated
    assert reporter.last == job.recorded[-1][1]


def test_search_with_a_stopper_keeps_stopped_trials(tiny_domain_pair, tmp_path, capsys):
    from analysis.tables import failed_trials
    from search.results import load_search

    log_dir = tmp_path / "search"
    code = search_main(["--problem", "none_deepmerge", "--data", str(tiny_domain_pair),
                        "--log-dir", str(log_dir), "--max-evals", "3", "--evaluator", "serial",
                        "--stopper", "epochs-1", "--set", "epochs=3",
                        "--set", "max_batches_per_epoch=2", "--quiet"])
    assert code == 0
    assert "3 stopped early" in capsys.readouterr().out
    frame = load_search(log_dir)
    assert list(frame["status"]) == ["stopped"] * 3
    assert list(frame["epochs_run"]) == [1, 1, 1]
    assert frame["stopped_objective"].notna().all()
    assert failed_trials(frame).empty
    summary = (log_dir / "summary.csv").read_text()
    assert summary.count(",stopped,") == 3
    assert json.loads((log_dir / "search.json").read_text())["stopper"] == "epochs-1"
    # resuming with another stopper is another search
    with pytest.raises(SystemExit):
        search_main(["--problem", "none_deepmerge", "--data", str(tiny_domain_pair),
                     "--log-dir", str(log_dir), "--max-evals", "4", "--resume", "--quiet",
                     "--set", "epochs=3", "--set", "max_batches_per_epoch=2"])
    assert "stopper" in capsys.readouterr().err


# --- precision=auto (training/compute_path.py) -------------------------------------------------

def _cpu_units(monkeypatch, amx=False, avx512_bf16=False, onednn=True, capability="AVX512",
               vendor="AuthenticAMD"):
    """Pretend the CPU has (or lacks) bf16 units."""
    import training.compute_path as cp

    monkeypatch.setattr(cp, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn,
                        raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    return cp


@pytest.mark.parametrize(("units", "backbone_nhwc", "want"), [
    ({"amx": True, "avx512_bf16": True, "vendor": "GenuineIntel"}, False, ("bf16", True)),
    ({"avx512_bf16": True}, True, ("bf16", True)),  # an AMD Zen 4
    ({"avx512_bf16": True}, False, ("bf16", True)),
    # an Intel CPU with AVX-512 BF16 but no AMX: its bf16 kernels were measured slower
    ({"avx512_bf16": True, "vendor": "GenuineIntel"}, True, ("fp32", True)),
    ({"avx512_bf16": True, "vendor": "GenuineIntel"}, False, ("fp32", False)),
    ({}, True, ("fp32", True)),  # an AVX2 CPU: fp32, NHWC where the backbone gains from it
    ({}, False, ("fp32", False)),
    ({"avx512_bf16": True, "capability": "AVX2"}, True, ("fp32", True)),  # AVX2 emulation
    ({"avx512_bf16": True, "onednn": False}, False, ("fp32", False)),
])
def test_auto_resolves_per_cpu(units, backbone_nhwc, want, monkeypatch):
    cp = _cpu_units(monkeypatch, **units)
    path = cp.resolve_compute_path("auto", 0, 0, torch.device("cpu"), backbone_nhwc)
    assert (path.precision, path.channels_last, path.compile) == (*want, False)
    assert path.asked == "auto" and path.reason


def test_cpu_vendor_reads_this_machine():
    from training.compute_path import cpu_vendor

    info = Path("/proc/cpuinfo")
    found = re.search(r"^vendor_id\s*:\s*(\S+)", info.read_text(), re.M) if info.is_file() else None
    if found is None:
        pytest.skip("no vendor_id line in /proc/cpuinfo on this machine")
    assert cpu_vendor() == found.group(1)


def test_auto_respects_the_onednn_cap_and_explicit_knobs(monkeypatch):
    cp = _cpu_units(monkeypatch, amx=True, avx512_bf16=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cp.resolve_compute_path("auto", 0, 0, torch.device("cpu"), False).precision == "fp32"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    kept = cp.resolve_compute_path("auto", 0, 1, torch.device("cpu"), False)
    assert (kept.precision, kept.channels_last, kept.compile) == ("bf16", True, True)
    for asked in ("fp32", "bf16"):  # explicit precisions run as asked, knobs as given
        path = cp.resolve_compute_path(asked, 0, 0, torch.device("cpu"), True)
        assert (path.precision, path.channels_last, path.reason) == (asked, False, "asked")


def test_the_record_holds_what_was_asked_and_what_ran(tiny_domain_pair, tmp_path):
    from training.compute_path import resolve_compute_path

    record = run_trial(problem_config("none_deepmerge", [*TINY, "precision=auto"]),
                       tiny_domain_pair, tmp_path, progress=False)
    want = {**resolve_compute_path("auto", 0, 0, torch.device("cpu"), True).to_dict(),
            "flush_denormal": flushes_everywhere()}  # all threads here: tests/test_denormals.py
    assert record["config"]["precision"] == "auto"
    assert record["compute_path"] == want
    assert record["machine"] and "torch" in record["machine"]
    on_disk = json.loads((tmp_path / "record.json").read_text())
    assert on_disk["compute_path"] == want


def test_fast_path_compare_pairs_the_two_paths(tiny_domain_pair, tmp_path):
    """benchmarks/fast_path_compare.py on real tiny trials of both paths."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "fast_path_compare.py"
    spec = importlib.util.spec_from_file_location("fast_path_compare", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compare_main = module.main

    runs = tmp_path / "runs"
    for path in ("fp32", "auto"):
        for seed in (1, 2):
            run_trial(problem_config("none_deepmerge", [*TINY, f"precision={path}",
                                                        f"seed={seed}"]),
                      tiny_domain_pair, runs / path / "none_deepmerge" / f"seed_{seed}",
                      progress=False)
    assert compare_main(["--runs", str(runs), "--out", str(tmp_path / "out"),
                         "--bootstrap", "200"]) == 0
    rows = json.loads((tmp_path / "out" / "fast_path.json").read_text())
    assert [row["problem"] for row in rows] == ["none_deepmerge"]
    row = rows[0]
    assert row["seeds"] == [1, 2] and row["paths"]["auto"]["compute_path"]["asked"] == "auto"
    for domain in ("source", "target"):
        accs = [row["paths"][p][f"{domain}_val_accuracy"] for p in ("fp32", "auto")]
        assert row[f"{domain}_delta"]["delta"] == pytest.approx(
            sum(accs[1]) / 2 - sum(accs[0]) / 2)
    assert sorted(p.name for p in (tmp_path / "out" / "records" / "auto" /
                                   "none_deepmerge").iterdir()) == ["seed_1.json", "seed_2.json"]
    # An unpaired seed is refused with one line.
    (runs / "auto" / "none_deepmerge" / "seed_2" / "record.json").unlink()
    assert compare_main(["--runs", str(runs), "--out", str(tmp_path / "out2")]) == 2


def test_bench_trial_runs_real_trials(tiny_domain_pair, tmp_path):
    """benchmarks/bench_trial.py on tiny trials: one per path, then two side by side."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_trial.py"
    spec = importlib.util.spec_from_file_location("bench_trial", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "e2e.json"
    assert module.main(["--problem", "none_deepmerge", "--data", str(tiny_domain_pair),
                        "--threads", "1", "--out", str(out), *sum(
                            (["--set", s] for s in TINY), [])]) == 0
    figures = json.loads(out.read_text())
    labels = [row["label"] for row in figures["trials"]]
    assert labels[:2] == ["auto, 1 threads", "fp32, 1 threads"] and len(labels) == 4
    assert figures["trials"][1]["compute_path"]["precision"] == "fp32"
    assert all(row["wall_s"] > 0 and row["epochs_run"] >= 1 for row in figures["trials"])
