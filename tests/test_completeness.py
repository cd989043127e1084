"""Completeness, purity and confusion matrices (Figure 1's companion table) on real records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_analysis import make_runs

from analysis.report import main as report_main
from analysis.tables import completeness_table, completeness_values, confusion_counts
from search import results as load
from search.selection import selected_trials


@pytest.fixture(scope="session")
def runs(tiny_domain_pair, tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)


def test_counts_and_rates_follow_the_predictions(runs):
    frame = load.load_runs(runs)
    values = completeness_values(frame)
    chosen = selected_trials(frame).set_index("problem")
    assert set(values["problem"]) == set(chosen.index)
    for _, row in values.iterrows():
        with np.load(Path(chosen.loc[row["problem"], "trial_dir"]) / "predictions.npz") as npz:
            p = npz[f"{row['domain']}_test_p_merger"]
            y = npz[f"{row['domain']}_test_label"].astype(bool)
        assert row["TP"] == int(((p >= 0.5) & y).sum())
        assert row["FN"] == int(((p < 0.5) & y).sum())
        assert row["FP"] == int(((p >= 0.5) & ~y).sum())
        assert row["TN"] == int(((p < 0.5) & ~y).sum())
        assert row["completeness"] == pytest.approx(row["TP"] / (row["TP"] + row["FN"]))
        if row["TP"] + row["FP"]:
            assert row["purity"] == pytest.approx(row["TP"] / (row["TP"] + row["FP"]))
    seeds = values[values["problem"] == "mmd_deepmerge"]
    assert (seeds["n_runs"] == 3).all() and seeds["completeness_mean"].notna().all()
    table = completeness_table(frame)
    assert list(table.columns) == ["problem", "domain", "completeness (%)", "purity (%)",
                                   "TP", "FN", "FP", "TN"]
    assert confusion_counts(runs / "nope", "target") is None


def test_report_writes_the_companion_table(runs, tmp_path):
    assert report_main(["--runs", str(runs), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "completeness.md").read_text()
    assert "| problem | domain | completeness (%) | purity (%) | TP | FN | FP | TN |" in text
    assert "completeness.md" in (tmp_path / "report" / "report.md").read_text()
