"""A baseline registered in a test reaches the tables and figures: label, colour, order, place.

Nothing outside this file names the throw-away baseline: its :class:`BaselineSpec` is the only
place where it is declared, as the classical baseline's is in ``training/classical.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from analysis import headline, paper_study, paper_tables, tables
from search.results import load_runs
from training import classical
from training.registry import (
    BASELINES,
    BaselineSpec,
    baseline_names,
    get_baseline,
    get_method,
    method_names,
    register_baseline,
    register_method,
)

COIN = BaselineSpec(name="coin", problem="coin_flip", label="coin flip (throw-away)",
                    color="#17BECF", module=__name__, joins="deepmerge", order=-1,
                    summary="a test's own baseline")
RATES = {"none": (0.9, 0.6), "coin": (0.7, 0.55), "mmd": (0.88, 0.8)}


def fake_trial(folder: Path, method: str, seed: int, rate: tuple[float, float],
               backbone: str = "deepmerge", data_seed: int = 11, n: int = 40) -> None:
    """A finished trial's files: record (metrics from the predictions), predictions, ROC."""
    rng = np.random.default_rng(1000 * seed + len(method))
    labels = (np.arange(n) % 2).astype(np.uint8)
    arrays, metrics = {}, {}
    for domain, correct_rate in zip(("source", "target"), rate, strict=True):
        right = rng.random(n) < correct_rate
        arrays[f"{domain}_test_p_merger"] = np.where(right == labels.astype(bool), 0.9, 0.1)
        arrays[f"{domain}_test_label"] = labels
        arrays[f"{domain}_test_galaxy_id"] = np.arange(n) // 2
        metrics[f"{domain}_test"] = {"accuracy": float(right.mean()), "precision": 0.8,
                                     "recall": 0.7, "f1": 0.75, "brier": 0.1, "auc": 0.9}
    folder.mkdir(parents=True)
    np.savez(folder / "predictions.npz", **arrays)
    problem = COIN.problem if method == COIN.name else f"{method}_{backbone}"
    config = {"method": method, "backbone": backbone, "normalization": "source"}
    if method != COIN.name:  # a network's one-cycle schedule, run to its end
        config.update(epochs=30, stopping="best")
    record = {"problem": problem, "status": "ok", "method": method, "backbone": backbone,
              "seed": seed, "config": config, "epochs_run": config.get("epochs"),
              "metrics": metrics, "data": {"dir": "data/x", "source_attrs": {
                  "seed": data_seed, "generator_version": 4}}}
    (folder / "record.json").write_text(json.dumps(record))
    (folder / "roc.json").write_text(json.dumps(
        {"target_test": {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1]}}))


@pytest.fixture
def coin():
    with BASELINES.registered(COIN) as spec:
        yield spec
    assert COIN.name not in baseline_names()


def test_the_classical_baseline_is_a_spec():
    spec = get_baseline("classical")
    assert spec is classical.SPEC and spec.label == classical.TABLE_LABEL
    assert (spec.problem, spec.joins, spec.module) == (classical.PROBLEM, "deepmerge",
                                                       "training.classical")
    assert baseline_names()[0] == "classical" and "classical" not in method_names()


def test_a_name_label_or_colour_of_a_method_is_refused_for_a_baseline_and_back():
    """Methods and baselines are arms of one table: one label or colour names one arm."""
    method_names()  # both registries loaded: each checks the other's specs
    for clash, message in (({"name": "mmd"}, "already registered as a method"),
                           ({"label": "MMD"}, "already the method 'mmd'"),
                           ({"color": "#dd8452"}, "already the method 'mmd'")):
        with pytest.raises(ValueError, match=message):
            register_baseline(replace(COIN, **clash))
    assert COIN.name not in baseline_names()
    fresh = {"name": "toy", "label": "Toy", "color": "#000001"}
    for clash in ({"label": classical.TABLE_LABEL}, {"color": classical.SPEC.color}):
        with pytest.raises(ValueError, match="already the baseline 'classical'"):
            register_method(replace(get_method("mmd"), **{**fresh, **clash}))
    with pytest.raises(ValueError, match="already registered as a baseline"):
        register_method(replace(get_method("mmd"), **{**fresh, "name": "classical"}))
    assert "toy" not in method_names() and "classical" not in method_names()


def test_its_records_reach_the_headline_table_and_figure(coin, tmp_path):
    for arm, rate in RATES.items():
        for seed in (1, 2, 3):
            study = "coin" if arm == "coin" else f"seeds/{arm}"  # runs/<baseline>/seed_<S>
            fake_trial(tmp_path / "runs" / study / f"seed_{seed}", arm, seed, rate, data_seed=3)
    headline.collect(tmp_path / "runs", tmp_path / "out")
    assert (tmp_path / "out" / "records" / "coin" / "seed_3" / "record.json").is_file()

    result = headline.headline(tmp_path / "out")
    assert [row["arm"] for row in result["arms"]] == ["coin", "none", "mmd"]  # baselines first
    assert result["arms"][0]["label"] == COIN.label
    assert f"\n| {COIN.label} | " in headline.format_markdown(result)

    bars = headline.figure1(tmp_path / "out").axes[0]
    target = next(c for c in bars.containers if c.get_label() == "coin target")
    assert target.patches[0].get_facecolor()[:3] == pytest.approx(
        (0x17 / 255, 0xBE / 255, 0xCF / 255))


def test_its_records_sit_in_the_tables_of_the_backbone_it_joins(coin, tmp_path):
    record = {"method": "coin", "backbone": "flip", "seed": 2,
              "data": {"source_attrs": {"seed": 11}}}
    assert paper_study.seed_folder(tmp_path, record) == (
        tmp_path / "seeds" / "data11" / "deepmerge" / "coin" / "seed_2")
    for arm, rate in RATES.items():
        for seed in (1, 2, 3):
            fake_trial(tmp_path / "seeds" / "data11" / "deepmerge" / arm / f"seed_{seed}", arm,
                       seed, rate, backbone="flip" if arm == "coin" else "deepmerge")
    for arm in ("none", "mmd"):  # a ResNet table: the baseline does not join it
        fake_trial(tmp_path / "seeds" / "data11" / "resnet18" / arm / "seed_1", arm, 1,
                   RATES[arm], backbone="resnet18")
    result = paper_tables.build(tmp_path)
    assert result["schedule_violations"] == []  # a baseline has no schedule
    rows = result["extended"]["deepmerge"]["arms"]
    assert rows[0]["arm"] == "coin" and rows[0]["label"] == COIN.label
    assert rows[0]["seeds"] == [1, 2, 3]
    assert "coin" not in {row["arm"] for row in result["extended"]["resnet18"]["arms"]}


def test_its_seed_study_is_a_row_of_table1(coin, tmp_path):
    study = tmp_path / "runs" / "coin"
    for seed in (1, 2):
        fake_trial(study / f"seed_{seed}", "coin", seed, RATES["coin"], backbone="flip")
    (study / "seeds.json").write_text(json.dumps({
        "problem": COIN.problem, "method": COIN.name, "backbone": "flip", "seeds": [1, 2]}))
    frame = load_runs(study)
    assert COIN.label in tables.baseline_rows(frame)
    assert COIN.label in tables.table1(frame).index
