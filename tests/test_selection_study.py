"""The selection study (search/selection_study.py): gaps and choices checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.selection_study import (
    choose_and_confirm,
    load_set,
    main,
    selection_table,
    summary,
)

DIAG = ("feature_mmd_val", "target_val_entropy", "source_val_loss", "target_val_im",
        "target_val_snd", "target_val_bnm", "dev_risk")


def fake_search(folder: Path, problem: str, trials: list[dict]) -> Path:
    """A log folder with a results.csv and one record per trial (only what the study reads)."""
    folder.mkdir(parents=True)
    (folder / "results.csv").write_text("job_id,objective\n" + "".join(
        f"{i},0\n" for i in range(len(trials))))
    for i, t in enumerate(trials):
        record = {"status": "ok", "problem": problem,
                  "metrics": {"source_val": {"accuracy": t["sva"]},
                              "target_val": {"accuracy": t["tva"]},
                              "target_test": {"accuracy": t["tta"]}},
                  "diagnostics": {k: t.get(k, 0.5) for k in DIAG}}
        (folder / "trials" / str(i)).mkdir(parents=True)
        (folder / "trials" / str(i) / "record.json").write_text(json.dumps(record))
    return folder


TRIALS = [  # source val acc tracks target val acc in problem a only
    {"sva": 0.9, "tva": 0.80, "tta": 0.78, "target_val_im": 0.1},
    {"sva": 0.8, "tva": 0.70, "tta": 0.72, "target_val_im": 0.3},
    {"sva": 0.7, "tva": 0.60, "tta": 0.61, "target_val_im": 0.2},
]


def test_gaps_and_correlations_by_hand(tmp_path):
    frame = load_set([fake_search(tmp_path / "a", "mmd_deepmerge", TRIALS)])
    table = selection_table(frame, "target_val_accuracy").set_index("objective")
    sva = table.loc["source_val_accuracy"]
    assert sva["spearman"] == pytest.approx(1.0) and sva["gap_points"] == pytest.approx(0.0)
    assert sva["picked_job"] == "0"
    im = table.loc["im"]  # picks trial 1: 0.70 - 0.80
    assert im["picked_job"] == "1" and im["gap_points"] == pytest.approx(-10.0)
    assert im["spearman"] == pytest.approx(-0.5)
    oracle = table.loc["target_val_accuracy"]
    assert oracle["oracle"] and oracle["gap_points"] == pytest.approx(0.0)
    # ties (every trial 0.5) go to the lowest job id
    assert table.loc["snd", "picked_job"] == "0"
    test = selection_table(frame, "target_test_accuracy").set_index("objective")
    assert test.loc["im", "gap_points"] == pytest.approx(100 * (0.72 - 0.78))


def test_choose_on_one_set_confirm_on_another(tmp_path, capsys):
    a = fake_search(tmp_path / "a", "mmd_deepmerge", TRIALS)
    flipped = [{**t, "sva": 1.6 - t["sva"]} for t in TRIALS]  # now source val acc misleads
    b = fake_search(tmp_path / "b", "dann_deepmerge", flipped)
    result = choose_and_confirm([str(a)], [str(b)])
    chosen = result["choose"]["chosen"]
    assert chosen == "source_val_accuracy"  # gap 0 with the largest rho among label-free ones
    assert result["confirm"]["chosen_on_choose_set"] == chosen
    gap = 100 * (0.61 - 0.78)  # on b it picks trial 2
    assert result["confirm"]["chosen_mean_gap_points"] == pytest.approx(gap)
    assert result["confirm"]["confirmed"] is False
    assert not any(r["objective"] == "target_val_accuracy" and not r["oracle"]
                   for r in result["choose"]["summary"])
    out = tmp_path / "study.json"
    assert main(["--choose", str(a), "--confirm", str(b), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["choose"]["chosen"] == chosen
    assert "chosen: source_val_accuracy" in capsys.readouterr().out
    assert main(["--choose", str(tmp_path / "nope")]) == 2


def test_summary_orders_by_mean_gap(tmp_path):
    frame = load_set([fake_search(tmp_path / "a", "mmd_deepmerge", TRIALS),
                      fake_search(tmp_path / "b", "dann_deepmerge", TRIALS)])
    overview = summary(selection_table(frame, "target_val_accuracy"))
    gaps = overview["mean_gap_points"].tolist()
    assert gaps == sorted(gaps, reverse=True)
    assert set(overview["n_problems"]) == {2}
