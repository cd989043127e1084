"""Same seed, same numbers: tiny trials of every problem reproduce the committed reference.

``tests/reference/records.json`` was written by ``tests/reference/make_reference.py`` before
the spec registries replaced the per-method code (commit d60b45a) on an AMD EPYC with AVX2
kernels; a redesign that changes a default, the order of random draws or a loss shows up here
as a difference in a metric, a loss curve, a learning rate or the configuration itself.

CPU kinds take other kernels, so across kernel paths the numbers are compared at the
tolerance that ``tests/reference/tolerance.py`` derives from the drift measured between paths
(``drift.json``); the configuration, status and best epoch stay exact. Two runs on one machine
are exactly equal (:func:`test_two_runs_on_this_machine_are_identical`). Where the CPU has
AVX-512, the file is run once more under the AVX2 emulation (a second kernel path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reference.make_reference import FP32_EAGER, TINY, reference_view
from reference.tolerance import load_drift, mismatches, tolerances

from training.label_free import record_diagnostic_names
from training.loop import run_trial
from training.naming import problem_config

REFERENCE = Path(__file__).resolve().parent / "reference"

RECORDS = json.loads((REFERENCE / "records.json").read_text())
TOLERANCES = tolerances(load_drift())
AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
#: Fields introduced since the reference, with the defaults that keep its numbers.
ADDED_FIELDS = {"precision": "fp32", "channels_last": 0, "compile": 0, "normalization": "source",
                "max_images_per_epoch": 0,
                # fields of methods added later (none of them is read by none, mmd or dann)
                "fisher_intra": 1e-3, "fisher_inter": 1e-4, "entropy_weight": 0.1,
                "cdan_entropy": 1, "sinkhorn_blur": 0.05, "sinkhorn_scaling": 0.9,
                "sidda_lr_mult": 10.0}


def test_reference_covers_every_paper_problem():
    assert set(RECORDS) == {f"{m}_{b}" for m in ("none", "mmd", "dann")
                            for b in ("deepmerge", "resnet")}


def tiny_view(problem, data_dir, out_dir, extra=()):
    """The reference view of the tiny trial of ``problem`` (fp32, eager, NCHW)."""
    record = run_trial(problem_config(problem, [*TINY, *FP32_EAGER, *extra]), data_dir, out_dir,
                       problem=problem, progress=False)
    return json.loads(json.dumps(reference_view(record), sort_keys=True))


@pytest.mark.parametrize("problem", sorted(RECORDS))
def test_same_record_metrics_as_the_reference(problem, tiny_domain_pair, tmp_path, one_thread):
    got = tiny_view(problem, tiny_domain_pair, tmp_path)
    want = RECORDS[problem]
    # Fields added after the reference was made must sit at the values that reproduce it.
    added = {key: got["config"].pop(key) for key in set(got["config"]) - set(want["config"])}
    assert added == {key: value for key, value in ADDED_FIELDS.items() if key in added}
    assert set(added) <= set(ADDED_FIELDS)
    # The label-free validators came after the reference: present, not compared.
    assert set(got["diagnostics"]) == set(record_diagnostic_names())
    new_diagnostics = set(got["diagnostics"]) - set(want["diagnostics"])
    for key in new_diagnostics:
        got["diagnostics"].pop(key)
    assert got["config"] == want["config"]
    assert mismatches(got, want, TOLERANCES[problem]) == []


@pytest.mark.parametrize("problem", ["none_deepmerge", "mmd_resnet"])
def test_two_runs_on_this_machine_are_identical(problem, tiny_domain_pair, tmp_path, one_thread):
    assert tiny_view(problem, tiny_domain_pair, tmp_path / "a") == tiny_view(
        problem, tiny_domain_pair, tmp_path / "b")


def _smoothed_cross_entropy(*args, **kwargs):
    return torch.nn.functional.cross_entropy(*args, label_smoothing=0.05, **kwargs)


@pytest.mark.parametrize("problem", ["none_deepmerge", "mmd_resnet"])
@pytest.mark.parametrize("change", ["default lr x1.05", "random draws", "loss"])
def test_the_tolerance_catches_a_changed_default_draw_order_or_loss(
        problem, change, tiny_domain_pair, tmp_path, one_thread, monkeypatch):
    """The cross-path tolerance is loose enough for kernels, tight enough for real changes."""
    import training.trainer as loop  # where a trial seeds its generators

    extra = []
    if change == "default lr x1.05":  # as if the backbone's default lr had moved by 5 %
        extra = ["lr=0.00105"]
    elif change == "random draws":  # the batch order drawn from another generator state
        seeded = loop.seed_everything
        monkeypatch.setattr(loop, "seed_everything",
                            lambda seed, device: (seeded(seed, device),
                                                  torch.Generator().manual_seed(seed + 1))[1])
    else:  # a changed loss: label smoothing 0.05 in L_CL
        monkeypatch.setattr(loop, "F", type("F", (), {
            "cross_entropy": staticmethod(_smoothed_cross_entropy)}))
    got = tiny_view(problem, tiny_domain_pair, tmp_path, extra)
    assert mismatches(got, RECORDS[problem], TOLERANCES[problem]) != []


def test_tolerances_come_from_measured_drift_of_every_problem():
    drift = load_drift()
    assert drift["paths"], "drift.json holds no measured kernel path"
    for measured in drift["paths"].values():
        assert set(measured["drift"]) == set(RECORDS)
        assert {"machine", "command", "date"} <= set(measured)
    assert set(TOLERANCES) == set(RECORDS)


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512"
                    or any(key in os.environ for key in AVX2_EMULATION),
                    reason="the CPU has no AVX-512 (or this already is the emulation)")
def test_reference_under_the_avx2_emulation():
    """On an AVX-512 CPU, this file once more with torch's and oneDNN's AVX2 kernels."""
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         str(Path(__file__)), "-k", "same_record_metrics"],
        cwd=root, env={**os.environ, **AVX2_EMULATION}, capture_output=True, text=True,
        timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
