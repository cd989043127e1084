"""The stopping-rule study (benchmarks/stopping_study.py, issue 25): rules and exactness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import stopping_study  # noqa: E402

FEW = ["max_batches_per_epoch=2", "batch_size=4"]


def _trace(losses, lrs):
    return [{"source_val_loss": loss, "lr": lr} for loss, lr in zip(losses, lrs, strict=True)]


def test_rules_on_a_known_trace():
    #        epoch:  1    2    3    4    5    6    7    8
    losses = [0.9, 0.5, 0.6, 0.7, 0.8, 0.4, 0.45, 0.42]
    lrs = [0.1, 0.5, 1.0, 0.8, 0.5, 0.2, 0.05, 0.01]
    trace = _trace(losses, lrs)
    assert stopping_study.select(trace, "patience", 3) == (5, 2)  # waited 3 after epoch 2
    assert stopping_study.select(trace, "patience", 4) == (8, 6)  # never ran out of patience
    assert stopping_study.select(trace, "full_best_loss", 3) == (8, 6)
    assert stopping_study.select(trace, "last", 3) == (8, 8)
    # Peak at epoch 3: the best loss among epochs 4-8 is epoch 6's.
    assert stopping_study.select(trace, "best_after_peak", 3) == (8, 6)
    early_best = _trace([0.1, 0.5, 0.6, 0.7], [0.1, 1.0, 0.5, 0.1])
    assert stopping_study.select(early_best, "full_best_loss", 3) == (4, 1)
    assert stopping_study.select(early_best, "best_after_peak", 3) == (4, 3)
    with pytest.raises(ValueError, match="unknown rule"):
        stopping_study.select(trace, "oracle", 3)


def test_packed_correctness_round_trips():
    import numpy as np

    correct = np.random.default_rng(0).random(37) > 0.5
    assert (stopping_study.unpack(stopping_study._pack(correct), 37) == correct).all()


def test_offline_rule_equals_a_real_early_stopped_run(tiny_domain_pair, tmp_path, one_thread):
    """The trace of a full run replays the patience rule exactly (training is deterministic)."""
    from training.loop import run_trial
    from training.naming import problem_config

    records = tmp_path / "records"
    assert stopping_study.run("none_deepmerge", 1, str(tiny_domain_pair), tmp_path / "runs",
                              records, epochs=6, extra=(*FEW, "patience=1")) == 0
    study = json.loads((records / "none_deepmerge" / "seed_1.json").read_text())
    assert study["config"]["patience"] == 6 and study["default_patience"] == 1
    assert study["config"]["stopping"] == "best"
    assert [row["epoch"] for row in study["trace"]] == [1, 2, 3, 4, 5, 6]
    assert study["compute_path"] and study["machine"]
    stop, chosen = stopping_study.select(study["trace"], "patience", 1)
    real = run_trial(problem_config("none_deepmerge", ["seed=1", "epochs=6", *FEW, "patience=1",
                                                       "stopping=patience"]),
                     tiny_domain_pair, tmp_path / "real", progress=False)
    assert (real["epochs_run"], real["best_epoch"]) == (stop, chosen)
    for domain in ("source", "target"):
        assert study["trace"][chosen - 1][f"{domain}_val_accuracy"] == pytest.approx(
            real["metrics"][f"{domain}_val"]["accuracy"], abs=1e-12)
    # A finished record is not rerun; the table evaluates every rule from the records.
    assert stopping_study.run("none_deepmerge", 1, str(tiny_domain_pair), tmp_path / "runs",
                              records, epochs=6, extra=(*FEW, "patience=1")) == 0
    assert stopping_study.run("none_deepmerge", 2, str(tiny_domain_pair), tmp_path / "runs",
                              records, epochs=6, extra=(*FEW, "patience=1")) == 0
    result = stopping_study.table(records, tmp_path / "report", n_boot=50)
    rules = result["problems"]["none_deepmerge"]["rules"]
    assert set(rules) == set(stopping_study.RULES)
    assert rules["last"]["runs"][0]["selected_epoch"] == 6
    assert "delta_vs_patience" in rules["last"] and "delta_vs_patience" not in rules["patience"]
    assert result["choice"]["rule"] in stopping_study.FULL_SCHEDULE_RULES
    assert "Chosen:" in (tmp_path / "report" / "stopping.md").read_text()


def test_refuses_held_out_data_and_unknown_problems(tmp_path):
    from analysis.headline import HELD_OUT_DATA_SEEDS
    from galaxies.schema import domain_paths, write_domain
    from tests.conftest import make_tiny_pair

    pair = make_tiny_pair(seed=HELD_OUT_DATA_SEEDS[0])
    for domain, data in pair.items():
        write_domain(domain_paths(tmp_path)[domain], data)
    script = [sys.executable, str(REPO / "benchmarks" / "stopping_study.py"), "run", "--seed", "1",
              "--data", str(tmp_path), "--records", str(tmp_path / "r")]
    held_out = subprocess.run([*script, "--problem", "none_deepmerge"], capture_output=True,
                              text=True, cwd=REPO)
    assert held_out.returncode == 2 and "development data only" in held_out.stderr
    unknown = subprocess.run([*script, "--problem", "nope_deepmerge"], capture_output=True,
                             text=True, cwd=REPO)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error:")
    assert not (tmp_path / "r").exists()


def test_every_rule_of_the_trainer_returns_the_epoch_the_study_picks(tiny_domain_pair, tmp_path,
                                                                      one_thread):
    """``training.loop.fit`` with ``stopping=<rule>`` = the study's offline selection."""
    from training.loop import run_trial
    from training.naming import problem_config

    records = tmp_path / "records"
    settings = (*FEW, "lr=0.01")
    assert stopping_study.run("none_deepmerge", 3, str(tiny_domain_pair), tmp_path / "runs",
                              records, epochs=7, extra=settings) == 0
    trace = json.loads((records / "none_deepmerge" / "seed_3.json").read_text())["trace"]
    picks = {}
    for rule in stopping_study.RULES:
        config = problem_config("none_deepmerge", ["seed=3", "epochs=7", *settings,
                                                   f"stopping={stopping_study.CONFIG_VALUE[rule]}",
                                                   "patience=2"])
        real = run_trial(config, tiny_domain_pair, tmp_path / rule, progress=False)
        stop, chosen = stopping_study.select(trace, rule, 2)
        assert (real["epochs_run"], real["best_epoch"]) == (stop, chosen), rule
        assert real["metrics"]["target_val"]["accuracy"] == pytest.approx(
            trace[chosen - 1]["target_val_accuracy"], abs=1e-12), rule
        picks[rule] = chosen
    peak = max(range(7), key=lambda i: trace[i]["lr"]) + 1
    assert picks["last"] == 7 and picks["best_after_peak"] > peak, picks
    assert len(set(picks.values())) >= 2, picks  # the rules differ on this run
