"""The target-trained oracle (training/methods/oracle.py, issue 25): it learns from the target
training split with its labels, and from nothing of the source."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from galaxies.datasets import load_benchmark
from galaxies.schema import domain_paths, load_domain_arrays, write_domain
from training.loop import run_trial
from training.naming import problem_config
from training.trainer import Trainer

FEW = ["epochs=3", "batch_size=8", "max_batches_per_epoch=3"]


def test_its_batches_are_the_labelled_target_training_split(tiny_domain_pair):
    trainer = Trainer(problem_config("oracle_deepmerge", FEW), load_benchmark(tiny_domain_pair),
                      torch.device("cpu"))
    xt, yt = trainer.data[("target", "train")]
    assert trainer.train_domain == "target" and trainer.batches.target_x is None
    assert torch.equal(trainer.batches.source_x, xt) and torch.equal(trainer.batches.source_y, yt)
    x_val, y_val = trainer.data[("target", "val")]
    # its stopping split:
    assert trainer.source_val().loss == trainer.model_outputs(x_val, y_val).loss


def _with_flipped(tiny_domain_pair, folder, domain):
    folder.mkdir()
    other = "target" if domain == "source" else "source"
    shutil.copy(domain_paths(tiny_domain_pair)[other], domain_paths(folder)[other])
    data = load_domain_arrays(domain_paths(tiny_domain_pair)[domain])
    data.labels = (1 - data.labels).astype(np.uint8)
    write_domain(domain_paths(folder)[domain], data)
    return folder


def test_source_labels_never_reach_it_and_target_labels_do(tiny_domain_pair, tmp_path,
                                                           one_thread):
    config = problem_config("oracle_deepmerge", FEW)
    honest = run_trial(config, tiny_domain_pair, tmp_path / "honest", progress=False)
    source_flipped = run_trial(config, _with_flipped(tiny_domain_pair, tmp_path / "s", "source"),
                               tmp_path / "sf", progress=False)
    target_flipped = run_trial(config, _with_flipped(tiny_domain_pair, tmp_path / "t", "target"),
                               tmp_path / "tf", progress=False)
    assert honest["status"] == source_flipped["status"] == target_flipped["status"] == "ok"
    # Flipped source labels: the same training, the same target scores.
    assert [r["train_loss"] for r in honest["history"]] == [
        r["train_loss"] for r in source_flipped["history"]]
    assert honest["metrics"]["target_test"] == source_flipped["metrics"]["target_test"]
    # Flipped target labels: another training.
    assert [r["train_loss"] for r in honest["history"]] != [
        r["train_loss"] for r in target_flipped["history"]]
    # Its stopping signal is the target validation split: the returned epoch's row there is
    # the record's target validation accuracy.
    best = honest["history"][honest["best_epoch"] - 1]
    assert best["source_val_accuracy"] == pytest.approx(
        honest["metrics"]["target_val"]["accuracy"], abs=1e-12)


def test_the_source_target_oracle_learns_from_both_labelled_splits(tiny_domain_pair):
    trainer = Trainer(problem_config("oracleboth_deepmerge", FEW),
                      load_benchmark(tiny_domain_pair), torch.device("cpu"))
    assert trainer.train_domain == "both" and trainer.batches.target_x is None
    for split in ("train", "val"):
        (xs, ys), (xt, yt) = trainer.data[("source", split)], trainer.data[("target", split)]
        x, y = trainer.data[("both", split)]
        assert torch.equal(x, torch.cat([xs, xt])) and torch.equal(y, torch.cat([ys, yt]))
    assert torch.equal(trainer.batches.source_x, trainer.data[("both", "train")][0])
    x_val, y_val = trainer.data[("both", "val")]
    assert trainer.source_val().loss == trainer.model_outputs(x_val, y_val).loss


def test_the_source_target_oracle_reads_the_labels_of_both_domains(tiny_domain_pair, tmp_path,
                                                                   one_thread):
    config = problem_config("oracleboth_deepmerge", FEW)
    losses = {}
    for name, folder in (("honest", tiny_domain_pair),
                         ("source", _with_flipped(tiny_domain_pair, tmp_path / "s", "source")),
                         ("target", _with_flipped(tiny_domain_pair, tmp_path / "t", "target"))):
        record = run_trial(config, folder, tmp_path / f"run_{name}", progress=False)
        assert record["status"] == "ok"
        losses[name] = [r["train_loss"] for r in record["history"]]
    assert losses["honest"] != losses["source"] and losses["honest"] != losses["target"]
