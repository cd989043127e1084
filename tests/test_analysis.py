"""Analysis: loading, model selection, tables, figures and the report, on real tiny records.

The records are made once per session by :func:`make_runs` (real searches through
``search/run.py`` and real seed studies through ``search/seeds.py`` on the 40-row
``tiny_domain_pair``; each trial < 1 s); ``test_seeds.py`` and ``test_notebooks.py`` reuse
them through the same cache.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import figures, reproduce, tables
from analysis.report import main as report_main
from search import results as load
from search import selection
from search.run import main as search_main
from search.seeds import main as seeds_main
from training.label_free import diagnostic_names
from training.metrics import METRIC_NAMES
from training.naming import problem_names

# fp32: tests/test_seeds.py compares these runs across thread counts, which fp32 reproduces
# to summation order (~1e-5); bf16 autocast's reductions move more with the thread split.
FAST = ["--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--set", "batch_size=8",
        "--set", "precision=fp32"]
SEARCHES = {"none_deepmerge": 2, "mmd_deepmerge": 3, "dann_deepmerge": 2}
_CACHE: dict[str, Path] = {}


def make_runs(base: Path, data: Path) -> Path:
    """Build (once per session) ``base/runs`` with real records on the tiny data.

    - ``search/<p>`` for none/mmd/dann_deepmerge (2, 3, 2 random-search trials);
    - ``search/mmd_resnet``: 2 trials that all fail (``lambda_tl=1e39``: non-finite loss);
    - ``seeds/mmd_deepmerge``: seeds 1..3 of the best mmd_deepmerge trial;
    - ``seeds/none_resnet``: seeds 1..2 of a ``--set`` configuration (no search).
    dann_resnet and none_resnet have no search; dann_resnet has nothing at all.
    """
    key = str(base)
    if key in _CACHE:
        return _CACHE[key]
    runs = base / "runs"
    common = ["--data", str(data), "--evaluator", "serial", "--search", "random", "--quiet"]
    for problem, n in SEARCHES.items():
        assert search_main(["--problem", problem, "--log-dir", str(runs / "search" / problem),
                            "--max-evals", str(n), *common, *FAST]) == 0
    assert search_main(["--problem", "mmd_resnet", "--log-dir", str(runs / "search/mmd_resnet"),
                        "--max-evals", "2", *common, *FAST, "--set", "lambda_tl=1e39"]) == 0
    assert seeds_main(["--problem", "mmd_deepmerge", "--from-search",
                       str(runs / "search/mmd_deepmerge"), "--seeds", "3",
                       "--out", str(runs / "seeds/mmd_deepmerge"), "--quiet"]) == 0
    assert seeds_main(["--problem", "none_resnet", *FAST, "--seeds", "2", "--data", str(data),
                       "--out", str(runs / "seeds/none_resnet"), "--quiet"]) == 0
    _CACHE[key] = runs
    return runs


@pytest.fixture(scope="session")
def runs(tiny_domain_pair, tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)


@pytest.fixture(scope="session")
def frame(runs) -> pd.DataFrame:
    return load.load_runs(runs)


def record(trial_dir) -> dict:
    return json.loads((Path(trial_dir) / "record.json").read_text())


def best_row(runs, problem) -> pd.Series:
    results = pd.read_csv(runs / "search" / problem / "results.csv")
    results["objective"] = pd.to_numeric(results["objective"], errors="coerce")
    return results.sort_values(["objective", "job_id"], ascending=[False, True]).iloc[0]


def seed_records(runs, problem) -> list[dict]:
    return [record(p) for p in sorted((runs / "seeds" / problem).glob("seed_*"))]


# --- loading -------------------------------------------------------------------------------


def test_one_row_per_trial_with_every_column(frame, runs):
    counts = frame.groupby(["source", "problem"]).size().to_dict()
    assert counts == {("search", "none_deepmerge"): 2, ("search", "mmd_deepmerge"): 3,
                      ("search", "dann_deepmerge"): 2, ("search", "mmd_resnet"): 2,
                      ("seeds", "mmd_deepmerge"): 3, ("seeds", "none_resnet"): 2}
    for column in (*load.TRIAL_COLUMNS, *load.METRIC_COLUMNS, *diagnostic_names(), "p:lr",
                   "p:lambda_tl", "p:epochs", "best_epoch", "wall_time_s"):
        assert column in frame.columns, column
    assert "target_test_accuracy" in frame.columns and "source_val_auc" in frame.columns
    for _, row in frame[frame["status"] == "ok"].iterrows():
        rec = record(row["trial_dir"])
        assert row["problem"] == rec["problem"] and row["seed"] == rec["seed"]
        assert row["p:lr"] == rec["config"]["lr"]
        for split, metrics in rec["metrics"].items():
            for name, value in metrics.items():
                assert row[f"{split}_{name}"] == pytest.approx(value), (split, name)
        assert row["feature_mmd_val"] == pytest.approx(rec["diagnostics"]["feature_mmd_val"])
    search = frame[(frame["source"] == "search") & (frame["problem"] == "mmd_deepmerge")]
    results = pd.read_csv(runs / "search/mmd_deepmerge/results.csv").set_index("job_id")
    for _, row in search.iterrows():
        assert row["objective"] == pytest.approx(float(results.loc[row["job_id"], "objective"]))
        assert row["objective_name"] == "source_val_acc_minus_mmd"


def test_failed_trials_are_kept_and_flagged(frame):
    failed = frame[frame["problem"] == "mmd_resnet"]
    assert len(failed) == 2 and (failed["status"] == "failed").all()
    assert (failed["failure"] == "F_nan").all()
    assert failed["error"].str.contains("non-finite loss").all()
    assert failed["objective"].isna().all() and failed["target_test_accuracy"].isna().all()
    assert set(tables.failed_trials(frame)["problem"]) == {"mmd_resnet"}


def test_interrupted_and_unreadable_trials(runs, tmp_path):
    copy = tmp_path / "search"
    shutil.copytree(runs / "search/none_deepmerge", copy)
    shutil.copytree(copy / "trials/0", copy / "trials/7")  # a folder without a results row
    (copy / "trials/1/record.json").unlink()  # a results row without its record
    trials = load.load_search(copy).set_index("job_id")
    assert trials.loc[7, "status"] == "interrupted" and math.isnan(trials.loc[7, "objective"])
    assert trials.loc[1, "status"] == "failed"  # finished, but its record is gone
    assert "record.json missing" in trials.loc[1, "error"]
    assert trials.loc[0, "status"] == "ok"


def test_discover_and_env_paths(runs, monkeypatch):
    found = load.discover([runs])
    assert {p.name for p in found.searches} == {*SEARCHES, "mmd_resnet"}
    assert {p.name for p in found.seed_studies} == {"mmd_deepmerge", "none_resnet"}
    monkeypatch.setenv("GALAXY_DA_RUNS", f"{runs}/search:relative/dir")
    paths = load.env_paths("GALAXY_DA_RUNS", "runs")
    assert paths[0] == runs / "search" and paths[1] == load.REPO_ROOT / "relative/dir"
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load.discover([runs / "nope"])


# --- model selection -----------------------------------------------------------------------


def test_selected_trial_is_the_best_objective(frame, runs):
    chosen = selection.selected_trials(frame).set_index("problem")
    assert set(chosen.index) == {*SEARCHES, "none_resnet"}
    for problem in SEARCHES:
        assert chosen.loc[problem, "job_id"] == best_row(runs, problem)["job_id"]
        assert chosen.loc[problem, "selected_from"] == "search"
    assert chosen.loc["none_resnet", "selected_from"] == "seeds"
    assert chosen.loc["none_resnet", "seed"] == 1


def test_named_strategies(frame):
    strategy = selection.get_strategy("source_val_accuracy")
    ranked = selection.rank_trials(frame, strategy)
    assert (ranked["score"] == ranked["source_val_accuracy"]).all()
    assert selection.get_strategy("target_val_accuracy").oracle
    assert not selection.get_strategy("search").oracle
    with pytest.raises(selection.SelectionError, match="source_val_accuracy"):
        selection.get_strategy("best_guess")


def test_best_configuration_keeps_fixed_values(runs):
    config, row = selection.best_configuration(runs / "search/mmd_deepmerge")
    assert config == record(row["trial_dir"])["config"]
    assert (config["epochs"], config["max_batches_per_epoch"], config["batch_size"]) == (1, 2, 8)
    with pytest.raises(selection.SelectionError, match="no successful trial"):
        selection.best_configuration(runs / "search/mmd_resnet")


# --- tables --------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def test_table1_cells_equal_the_records(frame, runs):
    table = tables.table1(frame)
    assert list(table.index)[:3] == ["no-DA", "MMD", "adversarial"]  # the paper's rows first
    assert list(table.index) == list(tables.method_labels().values())
    assert list(table.columns) == [("DeepMerge", "source"), ("DeepMerge", "target"),
                                   ("ResNet18", "source"), ("ResNet18", "target")]
    best = record(runs / "search/mmd_deepmerge/trials" / str(best_row(runs, "mmd_deepmerge")
                                                              ["job_id"]))
    seeds = np.array([r["metrics"]["target_test"]["accuracy"]
                      for r in seed_records(runs, "mmd_deepmerge")])
    expected = (f"{pct(best['metrics']['target_test']['accuracy'])} "
                f"({pct(seeds.mean())} ± {pct(seeds.std(ddof=1))})")
    assert table.loc["MMD", ("DeepMerge", "target")] == expected
    none = record(runs / "search/none_deepmerge/trials" / str(best_row(runs, "none_deepmerge")
                                                               ["job_id"]))
    assert table.loc["no-DA", ("DeepMerge", "source")] == pct(
        none["metrics"]["source_test"]["accuracy"])  # no seed study: the value alone
    resnet = seed_records(runs, "none_resnet")
    values = np.array([r["metrics"]["source_test"]["accuracy"] for r in resnet])
    assert table.loc["no-DA", ("ResNet18", "source")] == (
        f"{pct(values[0])} ({pct(values.mean())} ± {pct(values.std(ddof=1))})")
    assert table.loc["MMD", ("ResNet18", "target")] == tables.MISSING  # every trial failed
    assert table.loc["adversarial", ("ResNet18", "source")] == tables.MISSING  # never run
    numbers = tables.table1_values(frame).set_index(["problem", "domain"])
    assert numbers.loc[("mmd_resnet", "target"), "status"] == "failed"
    assert numbers.loc[("dann_resnet", "target"), "status"] == "missing"
    assert numbers.loc[("mmd_deepmerge", "target"), "n_ok"] == 3


def test_metrics_table_has_every_metric(frame, runs):
    table = tables.metrics_table(frame).set_index(["problem", "domain"])
    assert list(table.columns) == ["accuracy", "precision", "recall", "F1", "Brier", "AUC"]
    assert len(table) == 2 * len(problem_names())  # every problem x 2 domains
    best = record(runs / "search/dann_deepmerge/trials" / str(best_row(runs, "dann_deepmerge")
                                                               ["job_id"]))
    for metric, label in zip(METRIC_NAMES, table.columns, strict=True):
        value = best["metrics"]["target_test"][metric]
        assert table.loc[("dann_deepmerge", "target"), label] == f"{value:.3f}"
    assert (table.loc["dann_resnet"] == tables.MISSING).all().all()
    stats = tables.seed_stats(frame).set_index(["problem", "domain", "metric"])
    brier = [r["metrics"]["source_test"]["brier"] for r in seed_records(runs, "mmd_deepmerge")]
    assert stats.loc[("mmd_deepmerge", "source", "brier"), "mean"] == pytest.approx(
        np.mean(brier))
    assert stats.loc[("mmd_deepmerge", "source", "brier"), "std"] == pytest.approx(
        np.std(brier, ddof=1))


def test_best_configs_one_row_per_problem(frame, runs):
    best = tables.best_configs(frame).set_index("problem")
    assert len(best) == len(problem_names())
    status = {name: "missing" for name in problem_names()}
    status.update({"none_deepmerge": "ok", "mmd_deepmerge": "ok", "dann_deepmerge": "ok",
                   "none_resnet": "ok", "mmd_resnet": "failed"})
    assert best["status"].to_dict() == status
    top = best_row(runs, "mmd_deepmerge")
    assert best.loc["mmd_deepmerge", "lr"] == pytest.approx(top["p:lr"])
    assert best.loc["mmd_deepmerge", "score"] == pytest.approx(top["objective"])
    assert best.loc["mmd_resnet", "n_failed"] == 2


def test_markdown_writer():
    table = pd.DataFrame({"a": ["x|y", None], "b": [0.123456, float("nan")]})
    text = tables.to_markdown(table)
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 0.1235 |",
                                 "| — | — |"]


def test_search_results_sorted_best_first(runs):
    trials = load.load_search(runs / "search/mmd_deepmerge")
    table = tables.search_results(trials, load.searched_hyperparameters(trials))
    assert table["objective"].is_monotonic_decreasing
    assert {"lr", "lambda_tl", "mmd_bandwidths"} <= set(table.columns)
    assert "epochs" not in table.columns  # fixed, not searched


# --- figures -------------------------------------------------------------------------------


def test_figure1_bars_and_roc_equal_the_records(frame, runs):
    figure = figures.figure1(frame, "deepmerge")
    bars, roc = figure.axes[:2]
    containers = {c.get_label(): c for c in bars.containers}
    assert set(containers) == {f"{m} {d}" for m in ("none", "mmd", "dann")
                               for d in ("source", "target")}
    for problem in SEARCHES:
        rec = record(runs / "search" / problem / "trials" / str(best_row(runs, problem)
                                                                 ["job_id"]))
        method = rec["method"]
        for domain in ("source", "target"):
            heights = [p.get_height() for p in containers[f"{method} {domain}"]]
            expected = [rec["metrics"][f"{domain}_test"][m] for m in METRIC_NAMES]
            assert heights == pytest.approx(expected)
        assert all(p.get_hatch() for p in containers[f"{method} source"])
        assert not any(p.get_hatch() for p in containers[f"{method} target"])
        curves = json.loads((runs / "search" / problem / "trials" /
                             str(best_row(runs, problem)["job_id"]) / "roc.json").read_text())
        label = tables.method_labels()[method]
        lines = {ln.get_label(): ln for ln in roc.get_lines()}
        target = next(ln for name, ln in lines.items() if name.startswith(f"{label} target"))
        assert list(target.get_xdata()) == pytest.approx(curves["target_test"]["fpr"])
        assert target.get_linestyle() == "-"
        source = next(ln for name, ln in lines.items() if name.startswith(f"{label} source"))
        assert source.get_linestyle() == "--"
        assert f"AUC {rec['metrics']['target_test']['auc']:.2f}" in target.get_label()
    labels = [t.get_text() for t in bars.texts]
    mmd = record(runs / "search/mmd_deepmerge/trials" / str(best_row(runs, "mmd_deepmerge")
                                                             ["job_id"]))["metrics"]
    assert (f"{mmd['target_test']['accuracy']:.2f} ({mmd['source_test']['accuracy']:.2f})"
            in labels)


def test_figure1_names_missing_methods(frame):
    figure = figures.figure1(frame, "resnet18")
    bars = figure.axes[0]
    assert {c.get_label() for c in bars.containers} == {"none source", "none target"}
    assert "missing: MMD, adversarial" in bars.get_title()


def test_progress_figure_best_so_far(runs):
    trials = load.load_search(runs / "search/mmd_deepmerge")
    ax = figures.progress_figure(trials).axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "best so far")
    expected = trials.sort_values("job_id")["objective"].cummax().to_numpy()
    assert list(line.get_ydata()) == pytest.approx(expected)
    failed = load.load_search(runs / "search/mmd_resnet")
    labels = figures.progress_figure(failed).axes[0].get_legend_handles_labels()[1]
    assert labels == ["failed (2)"]


def test_search_space_and_seed_figures(frame, runs):
    trials = load.load_search(runs / "search/dann_deepmerge")
    names = load.searched_hyperparameters(trials)
    figure = figures.search_space_figure(trials, names, load.log_hyperparameters(trials))
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in visible] == names
    assert next(ax for ax in visible if ax.get_xlabel() == "lr").get_xscale() == "log"
    seeds = figures.seeds_figure(frame).axes[0]
    assert [t.get_text() for t in seeds.get_xticklabels()] == ["mmd_deepmerge", "none_resnet"]


# --- report CLI ----------------------------------------------------------------------------


def test_report_writes_tables_and_figures(runs, frame, tmp_path, capsys):
    out = tmp_path / "report"
    assert report_main(["--runs", str(runs / "search"), str(runs / "seeds"), "--out",
                        str(out)]) == 0
    for name in ("table1", "metrics", "seeds"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.md").is_file()
        assert (out / f"{name}_values.csv").is_file()
    assert (out / "table1.md").read_text() == tables.to_markdown(
        tables.table1(frame).set_axis([" ".join(c) for c in tables.table1(frame).columns],
                                      axis=1), index=True)
    csv = pd.read_csv(out / "table1.csv", index_col=0)
    assert csv.loc["MMD", "DeepMerge target"] == tables.table1(frame).loc[
        "MMD", ("DeepMerge", "target")]
    assert csv.loc["adversarial", "ResNet18 target"] == tables.MISSING
    best = pd.read_csv(out / "best_configs.csv")
    assert list(best["problem"]) == list(tables.problem_grid()["problem"])
    for stem in ("figure1_deepmerge", "figure1_resnet18", "seeds", "progress_none_deepmerge",
                 "progress_mmd_deepmerge", "progress_dann_deepmerge", "progress_mmd_resnet"):
        for suffix in (".png", ".pdf"):
            assert (out / "figures" / f"{stem}{suffix}").stat().st_size > 1000, stem
    text = (out / "report.md").read_text()
    assert "figures/figure1_deepmerge.png" in text and "2 failed" in text
    assert "| MMD |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        report_main(["--runs", str(tmp_path / "nothing"), "--out", str(out)])
    assert info.value.code == 2


# --- reproduction ----------------------------------------------------------------------------


def test_reproduce_full_profile_plan(capsys):
    assert reproduce.main(["--profile", "full", "--out", "reports/full", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * len(problem_names()) + 1  # searches, seed studies, report
    n = len(problem_names())
    assert all("--max-evals 40" in ln and "max_batches_per_epoch=0" in ln for ln in lines[:n])
    assert all("--seeds 10" in ln and "--from-search" in ln for ln in lines[n:2 * n])
    assert lines[-1].startswith("python analysis/report.py")


@pytest.mark.slow
def test_reproduce_tiny_profile_end_to_end(tmp_path):
    out, runs = tmp_path / "report", tmp_path / "runs"
    argv = ["--profile", "tiny", "--out", str(out), "--runs", str(runs)]
    assert reproduce.main(argv) == 0
    text = (out / "README.md").read_text()
    assert "python analysis/reproduce.py --profile tiny" in text
    for word in ("## Machine", "cores", "torch", "| search mmd_deepmerge |", "## Table 1",
                 "figures/figure1_deepmerge.png"):
        assert word in text
    assert (out / "figures/figure1_deepmerge.pdf").is_file()
    for problem in reproduce.DEEPMERGE:
        assert len(list((runs / "seeds" / problem).glob("seed_*/record.json"))) == 2
    frame = load.load_runs(runs)
    assert (frame["status"] == "ok").all() and len(frame) == 3 * 2 + 3 * 2
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("record.json")}
    assert reproduce.main(argv) == 0  # resumes: nothing is trained again
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("record.json")} == stamps
