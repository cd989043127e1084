"""Label-free validators: formulas against NumPy, degenerate inputs, records, no target label.

Each validator of ``training.validators`` is checked against an independent NumPy formula on
small arrays; degenerate inputs give NaN; a real tiny trial records every validator; flipping
every target label leaves every diagnostic unchanged (while the target accuracies move); a
tiny search runs with a validator as its objective.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from deephyper.analysis.hpo import read_results_from_csv

from galaxies.datasets import load_benchmark
from galaxies.schema import domain_paths, load_domain_arrays, write_domain
from search.objectives import OBJECTIVES, ORACLES, get_objective, objective_value
from search.run import main as search_main
from search.selection import STRATEGIES
from training import validators as v
from training.label_free import (
    ValidationOutputs,
    diagnostic_names,
    diagnostic_specs,
    get_diagnostic,
    record_diagnostic_names,
)
from training.loop import run_trial
from training.naming import problem_config
from training.scoring import interim_record
from training.trainer import Trainer

#: The diagnostics computed by the formulas of training/validators.py.
FORMULAS = {"target_val_im": "information_maximization",
            "target_val_snd": "soft_neighborhood_density", "target_val_bnm": "batch_nuclear_norm",
            "dev_risk": "dev_risk"}
#: objective name -> the diagnostic it reads, for every diagnostic that serves as one.
DIAGNOSTIC_OBJECTIVES = {spec.objective: spec.name for spec in diagnostic_specs()
                         if spec.objective is not None}
TINY = ["epochs=1", "batch_size=8", "max_batches_per_epoch=2"]


def dirichlet(n: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(c), size=n)


def np_entropy(p: np.ndarray) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


# --- formulas ----------------------------------------------------------------------------


def test_im_against_numpy():
    probs = dirichlet(9, 3)
    mean = probs.mean(axis=0)
    expected = np_entropy(mean) - np.mean([np_entropy(row) for row in probs])
    assert v.information_maximization(probs) == pytest.approx(expected, rel=1e-12)
    # balanced one-hot predictions: log 2 of diversity, no entropy; constant ones score 0
    assert v.information_maximization(np.eye(2)[[0, 1, 0, 1]]) == pytest.approx(math.log(2))
    assert v.information_maximization(np.tile([0.3, 0.7], (5, 1))) == pytest.approx(0.0)
    binary = v.class_probabilities(np.array([0.1, 0.8, 0.5]))
    np.testing.assert_allclose(binary, [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])


def test_snd_against_numpy():
    features = np.random.default_rng(1).normal(size=(8, 5))
    z = features / np.linalg.norm(features, axis=1, keepdims=True)
    entropies = []
    for i in range(len(z)):
        sims = np.array([z[i] @ z[j] for j in range(len(z)) if j != i]) / 0.05
        p = np.exp(sims - sims.max())
        entropies.append(np_entropy(p / p.sum()))
    assert v.soft_neighborhood_density(features) == pytest.approx(np.mean(entropies), rel=1e-10)
    assert v.soft_neighborhood_density(torch.from_numpy(features).float()) == pytest.approx(
        np.mean(entropies), rel=1e-5)
    # above max_samples: a fixed subset, the same on every call
    many = np.random.default_rng(2).normal(size=(30, 4))
    first = v.soft_neighborhood_density(many, max_samples=10)
    assert first == v.soft_neighborhood_density(many, max_samples=10)
    subset = many[v._subset(30, 10)]
    assert first == pytest.approx(v.soft_neighborhood_density(subset), rel=1e-12)


def test_bnm_against_numpy():
    probs = dirichlet(7, 2, seed=3)
    singular = np.sqrt(np.clip(np.linalg.eigvalsh(probs.T @ probs), 0, None))
    assert v.batch_nuclear_norm(probs) == pytest.approx(singular.sum() / 7, rel=1e-10)
    # k one-hot rows per class: singular values sqrt(k), sqrt(k) -> 1 / sqrt(k)
    assert v.batch_nuclear_norm(np.eye(2)[[0, 0, 0, 1, 1, 1]]) == pytest.approx(1 / math.sqrt(3))
    # collapsed onto one class: rank 1, norm sqrt(N) / N
    assert v.batch_nuclear_norm(np.eye(2)[[1] * 4]) == pytest.approx(0.5)


def test_dev_risk_against_numpy():
    rng = np.random.default_rng(4)
    losses = rng.exponential(size=12)
    assert v.dev_risk_from_weights(np.ones(12), losses) == pytest.approx(losses.mean())
    weights = rng.exponential(size=12)
    weighted = weights * losses
    cov = np.sum((weighted - weighted.mean()) * (weights - weights.mean())) / 11
    var = np.sum((weights - weights.mean()) ** 2) / 11
    eta = -cov / var
    expected = weighted.mean() + eta * weights.mean() - eta
    assert v.dev_risk_from_weights(weights, losses) == pytest.approx(expected, rel=1e-12)
    # the control variate removes the weights' noise from a constant loss entirely
    assert v.dev_risk_from_weights(weights, np.full(12, 0.7)) == pytest.approx(0.7)


def test_dev_weights_are_the_density_ratio():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    source, target = rng.normal(size=(20, 3)), rng.normal(0.8, 1, size=(10, 3))
    weights = v.dev_weights(source, target)
    both = StandardScaler().fit_transform(np.concatenate([source, target]))
    fitted = LogisticRegression(max_iter=1000).fit(both, np.r_[np.zeros(20), np.ones(10)])
    p = fitted.predict_proba(both[:20])[:, 1]
    np.testing.assert_allclose(weights, p / (1 - p) * 20 / 10, rtol=1e-6)
    # source rows that look like the target weigh more
    assert np.corrcoef(weights, source.sum(axis=1))[0, 1] > 0.5
    losses = rng.exponential(size=20)
    assert v.dev_risk(source, losses, target) == v.dev_risk_from_weights(weights, losses)
    assert v.dev_risk(source, losses, target) == v.dev_risk(source, losses, target)


def test_degenerate_inputs_give_nan():
    nan_probs = np.array([[0.5, 0.5], [np.nan, 0.5]])
    for value in (v.information_maximization(np.zeros((0, 2))), v.information_maximization(
            nan_probs), v.batch_nuclear_norm(np.zeros((0, 2))), v.batch_nuclear_norm(nan_probs)):
        assert math.isnan(value)
    rng = np.random.default_rng(6)
    good = rng.normal(size=(6, 4))
    with_zero = good.copy()
    with_zero[2] = 0
    with_nan = good.copy()
    with_nan[0, 0] = np.nan
    for features in (good[:1], np.zeros((0, 4)), with_zero, with_nan, np.ones((6, 4)),
                     np.zeros((6, 0))):
        assert math.isnan(v.soft_neighborhood_density(features))
    losses = rng.exponential(size=6)
    cases = [(good, losses, np.zeros((0, 4))), (good[:1], losses[:1], good),
             (np.ones((6, 4)), losses, np.ones((3, 4))), (good, losses[:5], good),
             (good, np.r_[losses[:5], np.inf], good), (good, losses, good[:, :3]),
             (with_nan, losses, good), (good[:, 0], losses, good)]
    for source, source_losses, target in cases:
        assert math.isnan(v.dev_risk(source, source_losses, target))
    assert math.isnan(v.dev_risk_from_weights(np.ones(1), np.ones(1)))
    empty = ValidationOutputs(source_loss=math.nan, source_losses=np.zeros(0),
                              source_features=np.zeros((0, 4)), target_prob_merger=np.zeros(0),
                              target_features=np.zeros((0, 4)))
    for key in FORMULAS:  # through the registry as scoring calls them: NaN, no exception
        assert math.isnan(get_diagnostic(key).compute(empty)), key


# --- objectives and strategies -----------------------------------------------------------


def test_every_validator_is_an_objective_and_a_strategy():
    assert set(FORMULAS) <= set(DIAGNOSTIC_OBJECTIVES.values())
    record = {"status": "ok", "metrics": {"source_val": {"accuracy": 0.9}},
              "diagnostics": {key: 0.25 for key in diagnostic_names()}}
    for name, key in DIAGNOSTIC_OBJECTIVES.items():
        assert name in OBJECTIVES and name in STRATEGIES and name not in ORACLES
        sign = 1 if get_diagnostic(key).direction == "higher" else -1
        assert (sign == -1) == name.startswith("neg_"), name  # the name says which way
        assert get_objective(name)(record) == sign * 0.25
        missing = {**record, "diagnostics": {k: x for k, x in record["diagnostics"].items()
                                             if k != key}}
        assert objective_value(name, missing) is None
        assert objective_value(name, {**record, "diagnostics": {key: None}}) is None
        assert objective_value(name, {**record, "diagnostics": {key: float("nan")}}) is None
    assert not STRATEGIES["neg_dev_risk"].oracle
    frame = pd.DataFrame([{"status": "ok", **{key: np.nan for key in diagnostic_names()}}])
    assert STRATEGIES["snd"].score(frame).isna().all()  # a classical-style row: not selectable


# --- real trials -------------------------------------------------------------------------


def flipped_copy(data_dir, out_dir):
    """A copy of ``data_dir`` with every target label flipped."""
    out_dir.mkdir()
    paths, copies = domain_paths(data_dir), domain_paths(out_dir)
    shutil.copyfile(paths["source"], copies["source"])
    target = load_domain_arrays(paths["target"])
    target.labels = (1 - target.labels).astype(np.uint8)
    write_domain(copies["target"], target)
    return out_dir


@pytest.mark.parametrize("problem", ["mmd_deepmerge", "adabn_deepmerge"])
def test_flipping_target_labels_moves_no_validator(tiny_domain_pair, tmp_path, one_thread,
                                                   problem):
    flipped = flipped_copy(tiny_domain_pair, tmp_path / "flipped")
    records = []
    for data, name in ((tiny_domain_pair, "a"), (flipped, "b")):
        record = run_trial(problem_config(problem, TINY), data, tmp_path / name,
                           problem=problem, progress=False)
        assert record["status"] == "ok", record.get("error")
        records.append(json.loads((tmp_path / name / "record.json").read_text()))
    original, flip = records
    diagnostics = original["diagnostics"]
    assert list(diagnostics) == record_diagnostic_names()
    assert all(isinstance(x, float) and math.isfinite(x) for x in diagnostics.values())
    assert flip["diagnostics"] == diagnostics  # exactly, every key
    assert flip["metrics"]["source_val"] == original["metrics"]["source_val"]
    for split in ("target_val", "target_test"):  # the labels were indeed flipped
        accuracies = original["metrics"][split]["accuracy"], flip["metrics"][split]["accuracy"]
        assert accuracies[0] != accuracies[1]
        assert sum(accuracies) == pytest.approx(1.0)


def test_interim_record_carries_the_validators(tiny_domain_pair, one_thread):
    trainer = Trainer(problem_config("dann_deepmerge", TINY), load_benchmark(tiny_domain_pair),
                       torch.device("cpu"))
    interim = interim_record(trainer)
    assert list(interim["diagnostics"]) == record_diagnostic_names()
    for name in DIAGNOSTIC_OBJECTIVES:
        assert objective_value(name, interim) is not None, name


def test_search_with_a_validator_objective(tiny_domain_pair, tmp_path):
    log_dir = tmp_path / "search"
    code = search_main(["--problem", "mmd_deepmerge", "--data", str(tiny_domain_pair),
                        "--log-dir", str(log_dir), "--objective", "neg_dev_risk",
                        "--evaluator", "serial", "--search", "random", "--max-evals", "2",
                        "--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--quiet"])
    assert code == 0
    frame = read_results_from_csv(str(log_dir / "results.csv"))
    assert len(frame) == 2
    for _, row in frame.iterrows():
        record = json.loads((log_dir / "trials" / str(row["job_id"]) / "record.json").read_text())
        assert float(row["objective"]) == pytest.approx(-record["diagnostics"]["dev_risk"])
        for key in diagnostic_names():  # every diagnostic is a column of the search's table
            assert float(row[f"m:{key}"]) == pytest.approx(record["diagnostics"][key]), key
    assert json.loads((log_dir / "search.json").read_text())["objective"] == "neg_dev_risk"


def test_every_objective_declares_the_diagnostics_it_reads():
    from search.objectives import DIAGNOSTICS_READ

    assert set(DIAGNOSTICS_READ) == set(OBJECTIVES)
    for name, keys in DIAGNOSTICS_READ.items():
        assert set(keys) <= set(diagnostic_names()), name
        record = {"status": "ok", "metrics": {"source_val": {"accuracy": 0.5},
                                              "target_val": {"accuracy": 0.5}},
                  "diagnostics": dict.fromkeys(keys, 0.25)}
        assert objective_value(name, record) is not None, name  # nothing else is read


class _Job:
    """The part of DeepHyper's job a stopper-driven trial talks to (never stops it)."""

    def __init__(self):
        self.recorded = []

    def record(self, budget, objective):
        self.recorded.append((budget, objective))

    def stopped(self):
        return False


def test_epochs_compute_only_the_search_objective(tiny_domain_pair, tmp_path, one_thread,
                                                  monkeypatch):
    """Per epoch: one pass over each validation split and the objective's diagnostic alone;
    every validator once, for the final record."""
    import training.evaluate as evaluate
    import training.trainer as trainer
    from search.runner import EpochReporter

    calls = {name: 0 for name in ("model_outputs", "feature_mmd", *FORMULAS)}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(trainer, "model_outputs",
                        counted("model_outputs", trainer.model_outputs))
    monkeypatch.setattr(evaluate, "feature_mmd", counted("feature_mmd", evaluate.feature_mmd))
    for key, function in FORMULAS.items():
        monkeypatch.setattr(v, function, counted(key, getattr(v, function)))
    job = _Job()
    epochs = 3
    record = run_trial(problem_config("mmd_deepmerge", ["epochs=3", "batch_size=8",
                                                        "max_batches_per_epoch=2", "patience=5"]),
                       tiny_domain_pair, tmp_path, progress=False,
                       on_epoch=EpochReporter(job, "source_val_acc_minus_mmd"))
    assert record["status"] == "ok" and [b for b, _ in job.recorded] == [1, 2, 3]
    assert calls["feature_mmd"] == epochs + 1  # the objective per epoch, then the record's
    for key in FORMULAS:
        assert calls[key] == 1, key  # the final record only
    # Per epoch: source val (early stopping and objective) + target val; then 4 splits.
    assert calls["model_outputs"] == 2 * epochs + 4
    assert list(record["diagnostics"]) == record_diagnostic_names()
