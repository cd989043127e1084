"""Calibration: ECE by hand, temperature scaling on a miscalibrated toy model, the trial CLI.

The trial tests copy a ``make_runs`` trial (tests/test_analysis.py) so that the shared
records stay untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_analysis import make_runs

from apply.calibrate import calibrate_trial
from apply.calibrate import main as calibrate_main
from apply.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_curve,
)
from apply.inference import load_trained, softmax_merger
from apply.predict import main as predict_main
from galaxies.schema import domain_paths, load_domain_arrays, write_domain
from search.results import load_search
from search.selection import rank_trials


def test_ece_against_a_hand_computed_value():
    # confidences 0.9, 0.8, 0.7, 0.6; correct 1, 0, 1, 1; 5 bins of width 0.2:
    # (0.4, 0.6]: {0.6 ok} -> |1 - 0.6| * 1/4;  (0.6, 0.8]: {0.8 wrong, 0.7 ok}
    # -> |0.5 - 0.75| * 2/4;  (0.8, 1]: {0.9 ok} -> |1 - 0.9| * 1/4.  Sum = 0.25.
    prob = np.array([0.9, 0.8, 0.3, 0.6])
    labels = np.array([1, 0, 0, 1])
    assert expected_calibration_error(labels, prob, n_bins=5) == pytest.approx(0.25)
    # perfectly confident and right: 0; confident and wrong: 1
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == pytest.approx(0.0)
    assert expected_calibration_error([0, 1], [1.0, 0.0]) == pytest.approx(1.0)


def test_reliability_curve_counts_and_fractions():
    prob = np.array([0.05, 0.15, 0.12, 0.95, 0.91, 0.55])
    labels = np.array([0, 1, 0, 1, 1, 0])
    curve = reliability_curve(labels, prob, n_bins=10)
    assert curve["count"] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert curve["fraction"][1] == pytest.approx(0.5) and curve["fraction"][2] is None
    assert curve["mean_prob"][9] == pytest.approx(0.93)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        reliability_curve([0], [1.5])


def test_temperature_scaling_fixes_an_overconfident_toy_model():
    rng = np.random.default_rng(0)
    log_odds = rng.normal(0, 1.5, size=4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-log_odds))).astype(int)
    logits = np.stack([np.zeros_like(log_odds), 4.0 * log_odds], axis=1)  # 4x overconfident
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(4.0, rel=0.15)
    before = negative_log_likelihood(logits, labels)
    after = negative_log_likelihood(logits, labels, temperature)
    assert after < before - 0.05
    ece_before = expected_calibration_error(labels, softmax_merger(logits))
    assert expected_calibration_error(labels, softmax_merger(logits, temperature)) < ece_before
    # it never changes a predicted class
    assert ((softmax_merger(logits) >= 0.5) == (softmax_merger(logits, temperature) >= 0.5)).all()
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(logits[labels == 1], labels[labels == 1])


@pytest.fixture(scope="session")
def trial(tiny_domain_pair, tmp_path_factory) -> Path:
    runs = make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)
    best = Path(rank_trials(load_search(runs / "search" / "mmd_deepmerge"))["trial_dir"].iloc[0])
    return best


def test_calibration_never_reads_target_labels(trial, tiny_domain_pair, tmp_path):
    mine = tmp_path / "trial"
    shutil.copytree(trial, mine)
    first = calibrate_trial(mine, tiny_domain_pair)
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    for domain, path in domain_paths(tiny_domain_pair).items():
        data = load_domain_arrays(path)
        if domain == "target":
            data.labels = (1 - data.labels).astype(np.uint8)
        write_domain(domain_paths(flipped)[domain], data)
    second = calibrate_trial(mine, flipped)
    assert second["temperature"] == first["temperature"]
    for split in ("source_val", "source_test"):
        assert second["splits"][split] == first["splits"][split]
    # target labels only evaluate: flipping them changes the reported target accuracy
    acc = [r["splits"]["target_test"]["uncalibrated"]["accuracy"] for r in (first, second)]
    assert acc[0] == pytest.approx(1 - acc[1])
    # fitted on the source validation split: it lowers (never raises) that split's NLL
    sv = first["splits"]["source_val"]
    assert sv["calibrated"]["nll"] <= sv["uncalibrated"]["nll"] + 1e-12


def test_cli_writes_calibration_used_by_predict(trial, tiny_domain_pair, tmp_path, capsys):
    mine = tmp_path / "trial"
    shutil.copytree(trial, mine)
    summary = tmp_path / "summary.json"
    assert calibrate_main(["--trial", str(mine), "--summary", str(summary)]) == 0
    assert "| T |" in capsys.readouterr().out
    stored = json.loads((mine / "calibration.json").read_text())
    assert stored["fitted_on"] == "source_val"
    assert json.loads(summary.read_text())["trials"][0]["temperature"] == stored["temperature"]
    target = load_domain_arrays(domain_paths(tiny_domain_pair)["target"])
    np.save(tmp_path / "x.npy", target.images[:8])
    out = tmp_path / "cat"
    assert predict_main(["--trial", str(mine), "--images", str(tmp_path / "x.npy"), "--out",
                         str(out), "--calibrated", "--quiet"]) == 0
    frame = json.loads((out / "catalogue.json").read_text())
    assert frame["models"][0]["temperature"] == stored["temperature"]
    import pandas as pd

    p = pd.read_csv(out / "catalogue.csv")["p_merger"].to_numpy()
    model = load_trained(mine)
    expected = softmax_merger(model.logits(target.images[:8]), stored["temperature"])
    np.testing.assert_allclose(p, expected, rtol=1e-9)


def test_cli_refuses_other_data(trial, tmp_path, capsys):
    from conftest import make_tiny_pair

    other = tmp_path / "other"
    other.mkdir()
    for domain, data in make_tiny_pair(seed=5).items():
        write_domain(domain_paths(other)[domain], data)
    assert calibrate_main(["--trial", str(trial), "--data", str(other)]) == 2
    assert "is not the data" in capsys.readouterr().err


def test_summary_never_overwrites_another_file(tmp_path, capsys):
    """--summary refuses a record.json, a folder or a .md path, before any work."""
    record = tmp_path / "record.json"
    record.write_text('{"status": "ok"}')
    folder = tmp_path / "folder.json"
    folder.mkdir()
    for path, message in ((record, "not a calibration summary"), (folder, "is a folder"),
                          (tmp_path / "x.md", "give a .json path")):
        assert calibrate_main(["--trial", str(tmp_path / "no-trial"), "--summary",
                               str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert record.read_text() == '{"status": "ok"}'
    assert calibrate_main(["--trial", str(tmp_path), "--device", "bogus"]) == 2
    assert "--device bogus" in capsys.readouterr().err
