"""A shared trial folder cannot run code: every checkpoint loader refuses pickled objects.

A ``checkpoint.pt`` with a planted object whose ``__reduce__`` creates a marker file, as an
extra key of an otherwise valid checkpoint, goes through the real command lines that load
checkpoints (``predict.py``, ``calibrate.py``, ``train.py --from-trial``): each refuses it
with one ``error:`` line and a non-zero exit, and the marker never appears. A checkpoint with
a NaN weight is refused the same way. (On 7ffe20d the loaders used ``weights_only=False``
and the payload ran.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from galaxies.schema import domain_paths, load_domain_arrays
from training.checkpoint import CHECKPOINT, CheckpointError, read_checkpoint

REPO = Path(__file__).resolve().parents[1]


class Planted:
    """Creates ``path`` when unpickled (a stand-in for ``os.system``)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def trial(tiny_trial) -> Path:
    return tiny_trial


def poisoned(trial: Path, folder: Path, change) -> Path:
    """A copy of ``trial`` whose checkpoint ``change`` altered (record and files kept)."""
    import shutil

    shutil.copytree(trial, folder)
    state = torch.load(folder / CHECKPOINT, weights_only=True)
    change(state)
    torch.save(state, folder / CHECKPOINT)
    return folder


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode != 0, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def test_payload_in_a_checkpoint_never_runs(trial, tiny_domain_pair, tmp_path):
    marker = tmp_path / "pwned"
    folder = poisoned(trial, tmp_path / "trial",
                      lambda state: state.__setitem__("extra", Planted(marker)))
    images = tmp_path / "images.npy"
    target = load_domain_arrays(domain_paths(tiny_domain_pair)["target"])
    np.save(images, target.images[:4].astype(np.float32))
    runs = {
        "predict": cli("apply/predict.py", "--trial", folder, "--images", images,
                       "--out", tmp_path / "catalogue", "--quiet"),
        "calibrate": cli("apply/calibrate.py", "--trial", folder),
        "train --from-trial": cli("training/train.py", "--problem", "adabn_deepmerge",
                                  "--data", tiny_domain_pair, "--from-trial", folder,
                                  "--out", tmp_path / "adabn", "--quiet", "--set", "epochs=1",
                                  "--set", "batch_size=8", "--set", "max_batches_per_epoch=2"),
    }
    for name, run in runs.items():
        line = one_error_line(run)
        assert "nothing in it ran" in line, (name, line)
        assert not marker.exists(), name
    assert not (tmp_path / "catalogue").exists() and not (tmp_path / "adabn" / "record.json"
                                                          ).exists()
    with pytest.raises(CheckpointError, match="nothing in it ran"):
        read_checkpoint(folder / CHECKPOINT)
    assert not marker.exists()


def test_a_nan_weight_is_refused(trial, tmp_path):
    def break_one(state):
        name = next(k for k, v in state["model"].items() if v.is_floating_point())
        state["model"][name] = torch.full_like(state["model"][name], float("nan"))

    folder = poisoned(trial, tmp_path / "trial", break_one)
    with pytest.raises(CheckpointError, match="not finite"):
        read_checkpoint(folder / CHECKPOINT)
    line = one_error_line(cli("apply/calibrate.py", "--trial", folder))
    assert "not finite" in line


def test_a_good_checkpoint_loads(trial):
    state = read_checkpoint(trial / CHECKPOINT)
    assert {"model", "config", "channel_stats", "best_epoch"} <= set(state)


def test_train_refuses_to_replace_a_finished_trial_without_force(trial, tiny_domain_pair,
                                                                 tmp_path):
    """train.py --out: a finished trial needs --force; its stale calibration and OOD reference
    go too."""
    import json
    import shutil

    from training.train import main as train_main

    out = tmp_path / "trial"
    shutil.copytree(trial, out)
    (out / "calibration.json").write_text(json.dumps({"temperature": 2.0}))
    (out / "ood_reference.npz").write_bytes(b"fitted for the old network")
    before = (out / "record.json").read_bytes()
    tiny = ["--problem", "none_deepmerge", "--data", str(tiny_domain_pair), "--quiet",
            "--set", "epochs=1", "--set", "batch_size=8", "--set", "max_batches_per_epoch=2",
            "--seed", "2"]
    assert train_main([*tiny, "--out", str(out)]) == 2
    assert (out / "record.json").read_bytes() == before
    assert train_main([*tiny, "--out", str(out), "--force"]) == 0
    assert json.loads((out / "record.json").read_text())["seed"] == 2
    assert not (out / "calibration.json").exists()  # fitted for the old network
    assert not (out / "ood_reference.npz").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert train_main([*tiny, "--out", str(foreign), "--force"]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
