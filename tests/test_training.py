"""The training loop end to end on tiny data: records, determinism, failures, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from galaxies.schema import domain_paths, load_domain_arrays, write_domain
from training.label_free import record_diagnostic_names
from training.loop import run_trial
from training.metrics import METRIC_NAMES
from training.naming import problem_config

REPO = Path(__file__).resolve().parents[1]
TINY = ["epochs=3", "batch_size=8", "max_batches_per_epoch=3", "patience=3"]
SPLIT_KEYS = ("source_val", "target_val", "source_test", "target_test")


def trial(problem, data, out, extra=()):
    config = problem_config(problem, [*TINY, *extra])
    return run_trial(config, data, out, problem=problem, progress=False)


@pytest.mark.parametrize("problem", ["none_deepmerge", "mmd_deepmerge", "dann_deepmerge"])
def test_record_follows_the_contract(tiny_domain_pair, tmp_path, problem):
    record = trial(problem, tiny_domain_pair, tmp_path)
    assert record["status"] == "ok", record["error"]
    on_disk = json.loads((tmp_path / "record.json").read_text())
    assert on_disk["problem"] == problem
    assert on_disk["config"]["method"] == problem.split("_")[0]
    assert on_disk["seed"] == 1
    for key in SPLIT_KEYS:
        assert set(on_disk["metrics"][key]) == set(METRIC_NAMES)
        assert 0.0 <= on_disk["metrics"][key]["accuracy"] <= 1.0
    assert list(on_disk["diagnostics"]) == record_diagnostic_names()  # every one, in order
    assert 1 <= on_disk["best_epoch"] <= len(on_disk["history"]) <= 3
    assert on_disk["history"][0]["train_steps"] == 3
    assert torch.__version__.startswith(on_disk["versions"]["torch"].split("+")[0])
    roc = json.loads((tmp_path / "roc.json").read_text())
    assert set(roc) == set(SPLIT_KEYS)
    assert roc["target_test"]["fpr"][0] == 0.0 and roc["target_test"]["tpr"][-1] == 1.0
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["best_epoch"] == on_disk["best_epoch"]


def test_same_seed_gives_identical_metrics(tiny_domain_pair, tmp_path):
    first = trial("mmd_deepmerge", tiny_domain_pair, tmp_path / "a")
    second = trial("mmd_deepmerge", tiny_domain_pair, tmp_path / "b")
    other = trial("mmd_deepmerge", tiny_domain_pair, tmp_path / "c", ["seed=2"])
    assert first["metrics"] == second["metrics"]
    assert [r["train_loss"] for r in first["history"]] == [
        r["train_loss"] for r in second["history"]]
    assert [r["train_loss"] for r in first["history"]] != [
        r["train_loss"] for r in other["history"]]


def test_target_labels_are_never_used_for_training(tiny_domain_pair, tmp_path):
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    shutil.copy(domain_paths(tiny_domain_pair)["source"], flipped / "source.h5")
    target = load_domain_arrays(domain_paths(tiny_domain_pair)["target"])
    target.labels = (1 - target.labels).astype(np.uint8)
    write_domain(flipped / "target.h5", target)

    honest = trial("dann_deepmerge", tiny_domain_pair, tmp_path / "honest")
    lied_to = trial("dann_deepmerge", flipped, tmp_path / "lied")
    assert [r["train_loss"] for r in honest["history"]] == [
        r["train_loss"] for r in lied_to["history"]]
    assert honest["best_epoch"] == lied_to["best_epoch"]
    assert honest["metrics"]["source_test"] == lied_to["metrics"]["source_test"]
    # Scoring (after training) does read them: accuracy flips.
    a = honest["metrics"]["target_test"]["accuracy"]
    assert lied_to["metrics"]["target_test"]["accuracy"] == pytest.approx(1 - a)


def test_early_stopping_restores_the_best_epoch(tiny_domain_pair, tmp_path):
    config = problem_config("none_deepmerge", ["epochs=12", "batch_size=8",
                                               "max_batches_per_epoch=2", "patience=1",
                                               "lr=0.05", "stopping=patience"])
    record = run_trial(config, tiny_domain_pair, tmp_path, progress=False)
    history = record["history"]
    losses = [row["source_val_loss"] for row in history]
    assert record["best_epoch"] == 1 + int(np.argmin(losses))
    assert len(history) <= record["best_epoch"] + 1  # stopped after 1 epoch of patience
    assert record["diagnostics"]["source_val_loss"] == pytest.approx(min(losses), rel=1e-6)


def test_the_default_rule_trains_the_whole_schedule(tiny_domain_pair, tmp_path):
    """Issue 25: ``stopping=best`` (the default) never ends a run early, whatever the patience,
    and returns the epoch of the lowest source validation loss."""
    config = problem_config("none_deepmerge", ["epochs=6", "batch_size=8",
                                               "max_batches_per_epoch=2", "patience=1",
                                               "lr=0.05"])
    assert config.stopping == "best"
    record = run_trial(config, tiny_domain_pair, tmp_path, progress=False)
    losses = [row["source_val_loss"] for row in record["history"]]
    assert record["epochs_run"] == 6 and record["best_epoch"] == 1 + int(np.argmin(losses))
    peak = max(row["lr"] for row in record["history"])
    assert record["history"][-1]["lr"] < 0.05 * peak  # annealed (12 steps: coarse)


def run_cli(*args):
    return subprocess.run([sys.executable, "training/train.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_nan_loss_is_a_failed_trial(tiny_domain_pair, tmp_path):
    sets = [x for item in TINY for x in ("--set", item)]
    proc = run_cli("--problem", "mmd_deepmerge", "--data", str(tiny_domain_pair), "--out",
                   str(tmp_path), "--quiet", "--set", "lambda_tl=1e39", *sets)
    assert proc.returncode == 1
    assert "non-finite loss" in proc.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "failed"
    assert "non-finite loss" in record["error"]
    assert all(value is None for value in record["metrics"].values())


def test_cli_success_prints_metrics(tiny_domain_pair, tmp_path):
    sets = [x for item in TINY for x in ("--set", item)]
    proc = run_cli("--problem", "none_resnet", "--data", str(tiny_domain_pair), "--out",
                   str(tmp_path), "--quiet", "--seed", "3", *sets)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary["metrics"]) == set(SPLIT_KEYS)
    assert json.loads((tmp_path / "record.json").read_text())["config"]["seed"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--problem", "mmd_vgg"], "valid problems: none_deepmerge"),
        (["--problem", "mmd_deepmerge", "--set", "lamda_tl=1"], "lamda_tl"),
        (["--problem", "mmd_deepmerge", "--set", "lr=fast"], "'lr'"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, args, message):
    proc = run_cli(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_rejects_bad_data(tmp_path):
    (tmp_path / "source.h5").write_bytes(b"not hdf5")
    (tmp_path / "target.h5").write_bytes(b"not hdf5")
    proc = run_cli("--problem", "none_deepmerge", "--data", str(tmp_path), "--out",
                   str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2
    assert "source.h5" in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("problem", ["mmd_deepmerge", "dann_resnet"])
def test_trial_runs_on_cuda(tiny_domain_pair, tmp_path, problem):
    record = trial(problem, tiny_domain_pair, tmp_path, ["device=cuda"])
    assert record["status"] == "ok", record["error"]
    assert record["device"].startswith("cuda")
