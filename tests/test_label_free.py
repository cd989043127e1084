"""The registry of label-free diagnostics: one declaration reaches every list that names them.

A throw-away validator registered inside a test becomes a record key, a column of the search
table, a metadata column of DeepHyper's ``results.csv``, an objective and a selection
strategy, with no other file edited; it is gone after the test. The orders the registry
derives are those of the committed records and ``results.csv``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.objectives import OBJECTIVES, diagnostics_read, get_objective, objective_value
from search.results import load_search
from search.run import main as search_main
from search.runner import EpochReporter, metadata_keys
from search.selection import STRATEGIES, get_strategy
from training.label_free import (
    COMPUTED_AFTER,
    DiagnosticSpec,
    diagnostic_names,
    diagnostic_specs,
    record_diagnostic_names,
    register_diagnostic,
    registered_diagnostic,
)

REPO = Path(__file__).resolve().parents[1]


def mean_target_p(outputs):
    return float(np.mean(outputs.target_prob_merger))


THROWAWAY = DiagnosticSpec(
    "target_val_mean_p", mean_target_p, direction="higher", objective="mean_target_p",
    description="mean predicted merger probability of the target validation split (a test's)")


# --- the registry and the orders it derives ------------------------------------------------


def test_each_diagnostic_is_declared_once_with_a_consistent_objective():
    specs = diagnostic_specs()
    assert len({spec.name for spec in specs}) == len(specs)
    objectives = [spec.objective for spec in specs if spec.objective is not None]
    assert len(set(objectives)) == len(objectives)
    for spec in specs:
        assert spec.description and spec.computed_after in COMPUTED_AFTER, spec.name
        if spec.objective is not None:
            assert spec.objective in OBJECTIVES and diagnostics_read(spec.objective) == (
                spec.name,)


def test_record_order_groups_by_when_scoring_computes():
    groups = [next(s for s in diagnostic_specs() if s.name == name).computed_after
              for name in record_diagnostic_names()]
    assert groups == sorted(groups, key=COMPUTED_AFTER.index)
    assert sorted(record_diagnostic_names()) == sorted(diagnostic_names())


def test_orders_are_those_of_the_committed_records_and_results_csv():
    complete = 0
    for path in sorted(REPO.glob("reports/*/records/*/seed_*/record.json")):
        keys = list(json.loads(path.read_text()).get("diagnostics") or {})
        # records older than some diagnostics (or the classical baseline's) hold fewer
        assert keys == [key for key in record_diagnostic_names() if key in keys], path
        complete += keys == record_diagnostic_names()
    assert complete >= 10
    tables = sorted(REPO.glob("reports/*/searches/*/results.csv"))
    assert tables
    for path in tables:
        with path.open() as handle:
            header = next(csv.reader(handle))
        metadata = [c[2:] for c in header if c.startswith("m:") and "timestamp" not in c]
        assert metadata == list(metadata_keys()), path


def test_the_objectives_of_the_committed_selection_study_are_still_offered_in_order():
    study = json.loads((REPO / "benchmarks/records/selection_study.json").read_text())
    compared = list(dict.fromkeys(row["objective"] for row in study["choose"]["per_problem"]))
    assert len(compared) >= 10
    # each still offered, its rows in the listing order (a new objective may come in between)
    assert compared == [name for name in OBJECTIVES if name in compared]


def test_a_bad_declaration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_diagnostic(DiagnosticSpec("dev_risk", mean_target_p, "again"))
    with pytest.raises(ValueError, match="direction"):
        register_diagnostic(DiagnosticSpec("x_up", mean_target_p, "x", direction="up",
                                           objective="x"))
    with pytest.raises(ValueError, match="objective"):
        register_diagnostic(DiagnosticSpec("x_up", mean_target_p, "x", direction="higher"))
    with pytest.raises(ValueError, match="computed_after"):
        register_diagnostic(DiagnosticSpec("x_up", mean_target_p, "x", computed_after="test"))
    assert "x_up" not in diagnostic_names()
    clash = DiagnosticSpec("x_clash", mean_target_p, "x", direction="higher", objective="im")
    with registered_diagnostic(clash):
        for use in (lambda: get_objective("im"), lambda: objective_value("im", {"status": "ok"})):
            with pytest.raises(ValueError, match="already taken"):
                use()


# --- a throw-away validator ------------------------------------------------------------------


class _Job:
    def __init__(self):
        self.recorded = []

    def record(self, budget, objective):
        self.recorded.append((budget, objective))

    def stopped(self):
        return False


def test_a_throwaway_validator_reaches_every_list(tiny_domain_pair, tmp_path, one_thread):
    log_dir = tmp_path / "search"
    with registered_diagnostic(THROWAWAY):
        name, objective = THROWAWAY.name, THROWAWAY.objective
        assert record_diagnostic_names()[-1] == name and diagnostic_names()[-1] == name
        assert objective in OBJECTIVES and objective in STRATEGIES
        # a stopper's epoch computes the objective's diagnostic alone
        asked = []
        reporter = EpochReporter(_Job(), objective)
        reporter(1, lambda diagnostics: asked.append(diagnostics) or {
            "status": "ok", "diagnostics": {name: 0.4}})
        assert asked == [(name,)] and reporter.last == 0.4
        code = search_main(["--problem", "mmd_deepmerge", "--data", str(tiny_domain_pair),
                            "--log-dir", str(log_dir), "--objective", objective,
                            "--evaluator", "serial", "--search", "random", "--max-evals", "1",
                            "--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--quiet"])
        assert code == 0
        record = json.loads((log_dir / "trials/0/record.json").read_text())
        value = record["diagnostics"][name]  # a record key, after the built-in ones
        assert list(record["diagnostics"]) == record_diagnostic_names()
        assert math.isfinite(value) and 0 <= value <= 1
        results = pd.read_csv(log_dir / "results.csv")  # DeepHyper's metadata column
        assert results.loc[0, f"m:{name}"] == pytest.approx(value)
        assert results.loc[0, "objective"] == pytest.approx(value)  # the search's objective
        frame = load_search(log_dir)  # a column of the search table, beside the built-in ones
        columns = list(frame.columns)
        assert columns.index(name) == columns.index("dev_risk") + 1
        assert frame.loc[0, name] == pytest.approx(value)
        assert objective_value(objective, record) == pytest.approx(value)
        assert get_strategy(objective).score(frame).iloc[0] == pytest.approx(value)
    # removed afterwards: nothing of it is left in any list
    assert name not in diagnostic_names() and name not in metadata_keys()
    assert objective not in OBJECTIVES and objective not in STRATEGIES
    with pytest.raises(KeyError, match="unknown objective"):
        get_objective(objective)
