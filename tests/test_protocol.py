"""No decision reads a test split: objectives, selection strategies, early stopping, stoppers.

Each test scrambles the test splits (their metrics, or their images and labels) and checks
that what the code chooses (a score, a selected trial, the best epoch, the weights) does not
move.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from galaxies.datasets import load_benchmark
from search.objectives import OBJECTIVES, get_objective
from search.results import METRIC_COLUMNS
from search.selection import STRATEGIES, get_strategy
from training.label_free import diagnostic_names
from training.loop import fit
from training.naming import problem_config
from training.scoring import VAL_SPLITS
from training.trainer import Trainer

CPU = torch.device("cpu")


def a_record(rng: np.random.Generator) -> dict:
    metrics = {split: {m: float(rng.random()) for m in ("accuracy", "precision", "recall", "f1",
                                                         "brier", "auc")}
               for split in ("source_val", "target_val", "source_test", "target_test")}
    return {"status": "ok", "metrics": metrics,
            "diagnostics": {key: float(rng.random()) for key in diagnostic_names()}}


def test_no_objective_reads_a_test_metric():
    rng = np.random.default_rng(0)
    for _ in range(5):
        record = a_record(rng)
        scrambled = copy.deepcopy(record)
        for split in ("source_test", "target_test"):
            scrambled["metrics"][split] = {k: float("nan") for k in record["metrics"][split]}
        for name in OBJECTIVES:
            assert get_objective(name)(scrambled) == get_objective(name)(record), name


def test_no_selection_strategy_reads_a_test_column():
    rng = np.random.default_rng(1)
    rows = []
    for job in range(6):
        record = a_record(rng)
        row = {"source": "search", "status": "ok", "problem": "mmd_deepmerge", "job_id": job,
               "objective": float(rng.random())}
        row.update({f"{s}_{m}": v for s, ms in record["metrics"].items() for m, v in ms.items()})
        row.update(record["diagnostics"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    scrambled = frame.copy()
    tests = [c for c in METRIC_COLUMNS if "_test_" in c]
    scrambled[tests] = rng.permutation(scrambled[tests].to_numpy())
    for name in STRATEGIES:
        strategy = get_strategy(name)
        pd.testing.assert_series_equal(strategy.score(frame), strategy.score(scrambled))


def scramble_test_splits(trainer: Trainer) -> None:
    for domain in ("source", "target"):
        x, y = trainer.data[(domain, "test")]
        trainer.data[(domain, "test")] = (torch.randn_like(x) * 10, 1 - y)


def test_training_early_stopping_and_stoppers_never_read_a_test_split(tiny_domain_pair):
    config = problem_config("adabn_deepmerge", ["epochs=3", "batch_size=4",
                                                "max_batches_per_epoch=2", "patience=3"])
    results = []
    for scramble in (False, True):
        trainer = Trainer(config, load_benchmark(tiny_domain_pair), CPU)
        if scramble:
            scramble_test_splits(trainer)
        history, interims = [], []

        def on_epoch(epoch, interim, interims=interims):
            interims.append(interim())
            return False

        best_epoch, _ = fit(trainer, history, progress=False, on_epoch=on_epoch)
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        results.append((best_epoch, history, interims, weights))
    (e0, h0, i0, w0), (e1, h1, i1, w1) = results
    assert e0 == e1
    drop = ("train_time_s", "train_compute_s", "epoch_time_s")
    assert [{k: v for k, v in h.items() if k not in drop} for h in h0] == \
        [{k: v for k, v in h.items() if k not in drop} for h in h1]
    assert i0 == i1 and all(set(i["metrics"]) == {f"{d}_{s}" for d, s in VAL_SPLITS}
                            for i in i0)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
