"""analysis/paper_study.py (issue 25): its commands, and the committed copy of a search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_analysis import make_runs

from analysis import paper_study

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_lists_every_search_with_the_paper_protocol():
    proc = subprocess.run([sys.executable, "analysis/paper_study.py", "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("python galaxies/simulate.py --out data/benchmark-v4-seed2-dev")
    searches = [line for line in lines if line.startswith("python search/run.py")]
    assert len(searches) == len(paper_study.SEARCHES)
    for problem, trials in paper_study.SEARCHES.items():
        line = next(s for s in searches if f"--problem {problem} " in s)
        assert f"--max-evals {trials} " in line and "--resume" in line
        for flag in ("--budget paper", "--stopper sha", "--data data/benchmark-v4-seed2-dev"):
            assert flag in line
    seeds = [line for line in lines if line.startswith("python search/seeds.py")]
    assert len(seeds) == 3 * sum(paper_study.HELD_OUT.values())
    for data_seed in paper_study.HELD_OUT:
        assert any(line.startswith("python galaxies/simulate.py") and f"--seed {data_seed} "
                   in line and "--n-mergers 8120 --n-nonmergers 7306" in line for line in lines)
    # Table 1's DeepMerge rows come before the ResNet18 searches, seed-major.
    first_resnet = min(i for i, line in enumerate(lines) if "_resnet" in line)
    assert max(i for i, line in enumerate(lines) if line in seeds) < first_resnet
    assert [("--only-seed 1 " in line) for line in seeds[:3]] == [True] * 3
    # ... and across the held-out data seeds: each has seeds 1-3 before any has seed 4.
    first_four = min(i for i, line in enumerate(seeds) if "--only-seed 4 " in line)
    assert first_four == 3 * 3 * len(paper_study.HELD_OUT)

    from analysis.headline import DEVELOPMENT_DATA_SEEDS, HELD_OUT_DATA_SEEDS

    assert set(paper_study.HELD_OUT) <= set(HELD_OUT_DATA_SEEDS)
    assert "--seed 2 " in lines[0] and 2 in DEVELOPMENT_DATA_SEEDS


def test_bad_arguments_exit_2():
    proc = subprocess.run([sys.executable, "analysis/paper_study.py", "--only", "nope"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2


def test_a_search_is_copied_without_checkpoints_with_its_selection_gap(tiny_domain_pair,
                                                                         tmp_path_factory):
    runs = make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)
    log_dir = runs / "search" / "mmd_deepmerge"
    out = tmp_path_factory.mktemp("paper") / "mmd_deepmerge"
    paper_study.copy_search(log_dir, out)
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "results.csv" in copied and "search.json" in copied and "selection.json" in copied
    assert not [p for p in copied if p.endswith((".pt", ".npz"))]
    assert len([p for p in copied if p.endswith("record.json")]) == 3
    gap = json.loads((out / "selection.json").read_text())
    assert gap["trials"] == 3
    assert gap["oracle"]["target_val_accuracy"] >= gap["label_free"]["target_val_accuracy"]
    assert gap["gap_target_val_points"] == pytest.approx(
        gap["oracle"]["target_val_accuracy"] - gap["label_free"]["target_val_accuracy"])


def test_a_seed_is_collected_with_predictions_and_a_thinned_roc(tiny_domain_pair,
                                                                 tmp_path_factory):
    runs = make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)
    trial = next((runs / "search" / "mmd_deepmerge" / "trials").glob("*/record.json")).parent
    out = paper_study.collect_seed(trial, tmp_path_factory.mktemp("reports"))
    record = json.loads((out / "record.json").read_text())
    assert out.parts[-4:] == (f"data{record['data']['source_attrs']['seed']}", "deepmerge",
                              "mmd", f"seed_{record['seed']}")
    assert sorted(p.name for p in out.iterdir()) == ["predictions.npz", "record.json", "roc.json"]
    roc = json.loads((out / "roc.json").read_text())
    assert set(roc) == {"source_test", "target_test"}
    many = {"target_test": {"fpr": list(range(1000)), "tpr": list(range(1000))},
            "target_val": {"fpr": [0], "tpr": [0]}}
    thin = paper_study.thin_roc(many, max_points=50)
    assert list(thin) == ["target_test"] and len(thin["target_test"]["fpr"]) == 50
    assert thin["target_test"]["fpr"][0] == 0 and thin["target_test"]["fpr"][-1] == 999
