"""Paired comparison of two trials (``analysis/compare.py``): bootstrap, McNemar, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from analysis.compare import compare, main, paired_difference
from training.loop import run_trial
from training.naming import problem_config

REPO = Path(__file__).resolve().parents[1]
TINY = ["epochs=2", "batch_size=8"]


@pytest.fixture(scope="module")
def trials(tiny_domain_pair, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("compare")
    out = {}
    for problem in ("none_deepmerge", "mmd_deepmerge"):
        run_trial(problem_config(problem, TINY), tiny_domain_pair, base / problem,
                  problem=problem, progress=False)
        out[problem] = base / problem
    return out


def test_paired_difference_counts_and_interval():
    a = np.array([1, 1, 1, 1, 0, 0, 1, 0, 1, 1], dtype=bool)
    b = np.array([1, 0, 1, 1, 1, 1, 1, 1, 1, 0], dtype=bool)
    groups = np.arange(10)
    row = paired_difference(a, b, groups, n_boot=500, seed=0)
    assert row["only_a"] == 2 and row["only_b"] == 3
    assert row["delta"] == pytest.approx(0.1)
    assert row["mcnemar_p"] == pytest.approx(binomtest(3, 5, 0.5).pvalue)
    assert row["ci_low"] <= row["delta"] <= row["ci_high"]
    # one cluster holding every image: every resample is the whole set, so no spread
    one = paired_difference(a, b, np.zeros(10), n_boot=200, seed=0)
    assert one["ci_low"] == pytest.approx(0.1) and one["ci_high"] == pytest.approx(0.1)
    assert one["n_galaxies"] == 1


def test_a_trial_against_itself_is_no_difference(trials):
    table = compare(trials["mmd_deepmerge"], trials["mmd_deepmerge"], n_boot=200)
    assert list(table.index) == ["source", "target"]
    assert (table["delta"] == 0).all() and (table["ci_low"] == 0).all()
    assert (table["only_a"] == 0).all() and (table["mcnemar_p"] == 1).all()


def test_accuracies_from_stored_predictions_match_the_records(trials):
    table = compare(trials["none_deepmerge"], trials["mmd_deepmerge"], n_boot=200)
    for name, column in (("none_deepmerge", "acc_a"), ("mmd_deepmerge", "acc_b")):
        record = json.loads((trials[name] / "record.json").read_text())
        for domain in ("source", "target"):
            expected = record["metrics"][f"{domain}_test"]["accuracy"]
            assert table.loc[domain, column] == pytest.approx(expected)
    assert (table["ci_low"] <= table["delta"]).all() and (table["delta"] <= table["ci_high"]).all()
    assert (table["n_images"] == 9).all() and (table["n_galaxies"] == 5).all()  # tiny test split


def test_cli_prints_and_writes_json(trials, tmp_path):
    out = tmp_path / "cmp.json"
    result = subprocess.run(
        [sys.executable, "analysis/compare.py", str(trials["none_deepmerge"]),
         str(trials["mmd_deepmerge"]), "--bootstrap", "200", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "source" in result.stdout and "McNemar" in result.stdout
    assert [row["domain"] for row in json.loads(out.read_text())["rows"]] == ["source", "target"]


def test_bad_input_is_one_clear_error(trials, tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), str(trials["mmd_deepmerge"])]) == 2
    assert "record.json is missing" in capsys.readouterr().err
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "record.json").write_text(json.dumps({"status": "failed", "error": "nan loss"}))
    assert main([str(failed), str(trials["mmd_deepmerge"])]) == 2
    assert "not 'ok'" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "record.json").write_text((trials["none_deepmerge"] / "record.json").read_text())
    assert main([str(broken), str(trials["mmd_deepmerge"])]) == 2
    assert "predictions.npz is missing" in capsys.readouterr().err
    (broken / "predictions.npz").write_bytes(b"not an archive")
    assert main([str(broken), str(trials["mmd_deepmerge"])]) == 2
    assert "cannot be read" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "record.json").write_text((trials["none_deepmerge"] / "record.json").read_text())
    with np.load(trials["none_deepmerge"] / "predictions.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["target_test_galaxy_id"] = arrays["target_test_galaxy_id"] + 1000
    np.savez(other / "predictions.npz", **arrays)
    assert main([str(other), str(trials["mmd_deepmerge"])]) == 2
    assert "different target test images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(trials["none_deepmerge"]), str(trials["mmd_deepmerge"]), "--bootstrap", "5"])
