"""The headline table: seed-averaged paired differences, protocol checks, README = records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis import headline
from analysis.compare import CompareError, paired_difference_over_seeds
from training.record import REPO_ROOT

REPORT = REPO_ROOT / "reports" / "headline"


def test_seed_averaged_difference_by_hand():
    a = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    b = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=bool)
    groups = np.array([0, 0, 1, 2])
    out = paired_difference_over_seeds(a, b, groups, n_boot=500, seed=0)
    assert out["per_seed"] == [0.25, 0.75]
    assert out["delta"] == pytest.approx(0.5)
    assert out["n_seeds"] == 2 and out["n_images"] == 4 and out["n_galaxies"] == 3
    assert out["ci_low"] <= out["delta"] <= out["ci_high"]
    same = paired_difference_over_seeds(a, a, groups, n_boot=200, seed=0)
    assert same["delta"] == same["ci_low"] == same["ci_high"] == 0.0
    with pytest.raises(CompareError, match="same seeds"):
        paired_difference_over_seeds(a, b[:1], groups, n_boot=10, seed=0)


def fake_arm(root: Path, arm: str, method: str, seeds, correct_rate: float, data_seed: int = 3,
             normalization: str = "source", n: int = 40) -> None:
    rng = np.random.default_rng(len(arm))
    labels = np.arange(n) % 2
    for seed in seeds:
        folder = root / "records" / arm / f"seed_{seed}"
        folder.mkdir(parents=True)
        record = {"status": "ok", "method": method, "seed": seed,
                  "config": {"method": method, "normalization": normalization},
                  "data": {"dir": "data/x", "source_attrs": {"seed": data_seed,
                                                             "generator_version": 4}}}
        (folder / "record.json").write_text(json.dumps(record))
        arrays = {}
        for domain in ("source", "target"):
            right = rng.random(n) < correct_rate
            arrays[f"{domain}_test_p_merger"] = np.where(right == labels.astype(bool), 0.9, 0.1)
            arrays[f"{domain}_test_label"] = labels.astype(np.uint8)
            arrays[f"{domain}_test_galaxy_id"] = np.arange(n) // 2
        np.savez(folder / "predictions.npz", **arrays)


def test_headline_from_fake_records(tmp_path):
    fake_arm(tmp_path, "none", "none", [1, 2, 3], 0.6)
    fake_arm(tmp_path, "jointbn", "jointbn", [1, 2, 3], 0.7)
    fake_arm(tmp_path, "mmd", "mmd", [1, 2, 3], 0.8)
    result = headline.headline(tmp_path)
    names = [row["arm"] for row in result["arms"]]
    assert names == ["none", "jointbn", "mmd"]
    mmd = result["arms"][2]
    assert set(mmd["vs"]) == {"none", "jointbn"}
    none = result["arms"][0]
    want = np.mean(np.array(mmd["target_per_seed"]) - np.array(none["target_per_seed"]))
    assert mmd["vs"]["none"]["target"]["delta"] == pytest.approx(want)
    table = headline.format_markdown(result)
    assert "| MMD |" in table and "held-out data seed 3" in table


def test_protocol_refuses_development_seed_and_too_few_seeds(tmp_path):
    fake_arm(tmp_path / "a", "none", "none", [1, 2, 3], 0.6, data_seed=1)
    with pytest.raises(headline.HeadlineError, match="not a held-out seed"):
        headline.headline(tmp_path / "a")
    fake_arm(tmp_path / "b", "none", "none", [1, 2], 0.6)
    with pytest.raises(headline.HeadlineError, match=">= 3"):
        headline.headline(tmp_path / "b")
    fake_arm(tmp_path / "c", "none", "none", [1, 2, 3], 0.6)
    fake_arm(tmp_path / "c", "mmd", "mmd", [1, 2, 4], 0.6)
    with pytest.raises(headline.HeadlineError, match="different training seeds"):
        headline.headline(tmp_path / "c")


def test_readme_headline_equals_the_committed_records():
    """Every number of README's headline table is recomputed from reports/headline/records."""
    result = headline.headline(REPORT)
    markdown = headline.format_markdown(result)
    assert headline.readme_block(REPO_ROOT / "benchmarks/results/protocol-and-headline.md") \
        == markdown
    assert (REPORT / "headline.md").read_text() == markdown
    stored = json.loads((REPORT / "headline.json").read_text())
    assert stored == json.loads(json.dumps(result))


def test_readme_sentence_on_the_earlier_headline_equals_the_records():
    """README names the earlier headline's target accuracies: each equals the table's cell."""
    markdown = headline.format_markdown(headline.headline(REPORT))
    target = {cells[0]: cells[2] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()
        if line.startswith("| ") and not line.startswith("| DeepMerge"))}
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    said = (f"MMD {target['MMD']} % and DANN {target['adversarial (DANN)']} % target against "
            f"no-DA's {target['no-DA']} % and joint-BN's {target['joint-BN (λ_TL = 0)']} %")
    assert said in readme


def test_committed_headline_follows_the_protocol():
    arms = headline.load_arms(REPORT)
    protocol = headline.check_protocol(arms)
    assert protocol["data_seed"] in headline.HELD_OUT_DATA_SEEDS
    assert not set(headline.HELD_OUT_DATA_SEEDS) & set(headline.DEVELOPMENT_DATA_SEEDS)
    assert protocol["generator_version"] == 4
    assert len(protocol["training_seeds"]) >= 3
    names = {arm.name for arm in arms}
    assert {"classical", "none", "none-perdomain", "adabn", "jointbn", "mmd", "dann"} <= names
    for path in REPORT.rglob("*"):
        assert path.suffix != ".pt", f"{path}: no checkpoint belongs in reports/"


def test_headline_figure_bars_equal_the_records(tmp_path):
    fake_arm(tmp_path, "none", "none", [1, 2, 3], 0.6)
    fake_arm(tmp_path, "mmd", "mmd", [1, 2, 3], 0.8)
    figure = headline.figure1(tmp_path)
    bars = figure.axes[0]
    heights = {c.get_label(): c.patches[0].get_height() for c in bars.containers
               if hasattr(c, "patches")}
    for arm in headline.load_arms(tmp_path):
        for domain in ("source", "target"):
            assert heights[f"{arm.name} {domain}"] == pytest.approx(arm.accuracy(domain).mean())
