"""DeepHyper search: CLI checks, the run function's failure contract, a real CBO search."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from deephyper.analysis.hpo import read_results_from_csv
from deephyper.evaluator import RunningJob

from problems import get_problem, problem_names
from search.deephyper_adapter import as_objective
from search.objectives import OBJECTIVES, get_objective
from search.run import main
from search.runner import TrialContext, run_trial_job
from search.selection_study import objective_study
from training.record import Failure

FAST = ["--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--quiet"]


def run_cli(*argv: str) -> int:
    return main([str(a) for a in argv])


def results(log_dir) -> pd.DataFrame:
    return read_results_from_csv(str(log_dir / "results.csv"))


def context(data_dir, log_dir, **extra):
    return TrialContext(problem="mmd_deepmerge", data_dir=str(data_dir), root=str(log_dir),
                        objective="source_val_acc_minus_mmd", torch_threads=1,
                        fixed={"epochs": 1, "max_batches_per_epoch": 2}, **extra)


# --- command line --------------------------------------------------------------------------


def test_unknown_problem_lists_valid_ones(capsys):
    with pytest.raises(SystemExit) as info:
        run_cli("--problem", "mmd_vgg")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert all(name in err for name in problem_names())


@pytest.mark.parametrize(("item", "named"), [
    ("lrr=1e-3", "lrr"),             # unknown key
    ("lr=abc", "lr"),                # not a number
    ("mmd_base=mode", "mmd_base"),   # not a valid choice
    ("patience=0", "patience"),      # out of range
    ("method=dann", "method"),       # chosen by --problem
    ("lr", "key=value"),             # malformed
])
def test_invalid_set_is_a_cli_error(item, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli("--problem", "mmd_deepmerge", "--log-dir", tmp_path / "s", "--set", item)
    assert info.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing started


def test_list_shows_every_problem_and_space(capsys):
    assert run_cli("--list") == 0
    out = capsys.readouterr().out
    for name in problem_names():
        assert name in out
    for hp in get_problem("dann_resnet").hyperparameter_names:
        assert hp in out


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        run_cli("--help")
    out = capsys.readouterr().out
    for option in ("--problem", "--data", "--log-dir", "--max-evals", "--timeout", "--search",
                   "--evaluator", "--workers", "--ray-address", "--gpus-per-trial", "--objective",
                   "--set", "--resume", "--seed", "--list", "--quiet"):
        assert option in out


# --- objectives and the run function -------------------------------------------------------


def test_objectives_registry():
    record = {"status": "ok",
              "metrics": {"source_val": {"accuracy": 0.9}, "target_val": {"accuracy": 0.7}},
              "diagnostics": {"feature_mmd_val": 0.2, "target_val_entropy": 0.3}}
    assert get_objective("source_val_accuracy")(record) == 0.9
    assert get_objective("source_val_acc_minus_mmd")(record) == pytest.approx(0.7)
    assert get_objective("neg_target_entropy")(record) == -0.3
    assert get_objective("target_val_accuracy")(record) == 0.7
    with pytest.raises(KeyError, match="source_val_accuracy"):
        get_objective("nope")
    assert set(OBJECTIVES) >= {"source_val_accuracy", "source_val_acc_minus_mmd",
                               "neg_target_entropy", "target_val_accuracy"}


def test_failure_reasons_and_resumed_objectives():
    assert str(Failure.NAN) == "F_nan" and f"{Failure.OOM}" == "F_oom"
    assert all(reason.value.startswith("F_") for reason in Failure)
    assert as_objective("0.5") == 0.5 and as_objective("F_oom") == "F_oom"


def test_run_function_returns_objective_and_metadata(tiny_domain_pair, tmp_path):
    job = RunningJob(parameters={"lr": 1e-3, "lambda_tl": 0.5})
    out = run_trial_job(job, context(tiny_domain_pair, tmp_path))
    assert isinstance(out["objective"], float), out
    meta = out["metadata"]
    assert meta["status"] == "ok" and 0 <= meta["target_test_accuracy"] <= 1
    record = json.loads((tmp_path / "trials" / "0" / "record.json").read_text())
    assert record["config"]["lambda_tl"] == 0.5 and record["config"]["epochs"] == 1


def test_run_function_never_raises(tiny_domain_pair, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("training.loop.run_trial", explode)
    out = run_trial_job(RunningJob(parameters={}), context(tiny_domain_pair, tmp_path))
    assert out["objective"] == "F_error"
    record = json.loads((tmp_path / "trials" / "0" / "record.json").read_text())
    assert record["status"] == "failed" and "boom" in record["traceback"]
    assert record["failure"] == "F_error" and record["versions"]["torch"]
    # a failure record has the same keys as the record of a trial that ran
    monkeypatch.undo()
    ran = run_trial_job(RunningJob(parameters={}), context(tiny_domain_pair, tmp_path / "ok"))
    assert ran["metadata"]["status"] == "ok"
    full = json.loads((tmp_path / "ok" / "trials" / "0" / "record.json").read_text())
    assert set(record) == set(full)

    bad = run_trial_job(RunningJob(parameters={"mmd_num": 0}), context(tiny_domain_pair,
                                                                      tmp_path / "b"))
    assert bad["objective"] == "F_invalid_config"
    assert set(bad["metadata"]) == set(out["metadata"])


# --- searches ------------------------------------------------------------------------------


def test_cbo_search_with_process_evaluator(tiny_domain_pair, tmp_path, capsys):
    log_dir = tmp_path / "search"
    code = run_cli("--problem", "mmd_deepmerge", "--data", tiny_domain_pair, "--log-dir", log_dir,
                   "--max-evals", 4, "--workers", 2, "--evaluator", "process", *FAST)
    assert code == 0
    frame = results(log_dir)
    problem = get_problem("mmd_deepmerge")
    searched = set(problem.hyperparameter_names)
    assert {f"p:{name}" for name in searched} <= set(frame.columns)
    assert len(frame) == 4 and frame["job_id"].is_unique
    assert not frame["objective"].astype(str).str.startswith("F").any()
    for job_id in frame["job_id"]:
        assert (log_dir / "trials" / str(job_id) / "record.json").is_file()
    assert (log_dir / "summary.csv").is_file() and (log_dir / "search.json").is_file()
    assert "target_test_acc" in capsys.readouterr().out
    first = frame.sort_values("job_id").iloc[0]  # the baseline (default configuration) goes first
    assert first["p:lr"] == pytest.approx(problem.defaults.lr)
    study = objective_study(log_dir)
    assert set(study["objective"]) == set(OBJECTIVES)
    assert (study["n_trials"] == 4).all()

    # an existing log dir is never overwritten silently
    with pytest.raises(SystemExit) as info:
        run_cli("--problem", "mmd_deepmerge", "--data", tiny_domain_pair, "--log-dir", log_dir,
                *FAST)
    assert info.value.code == 2
    assert "--resume" in capsys.readouterr().err


def test_trial_that_raises_is_an_f_row(tiny_domain_pair, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("training.loop.run_trial", explode)
    log_dir = tmp_path / "s"
    assert run_cli("--problem", "none_deepmerge", "--data", tiny_domain_pair, "--log-dir",
                   log_dir, "--max-evals", 2, "--evaluator", "serial", *FAST) == 0
    frame = results(log_dir)
    assert len(frame) == 2 and (frame["objective"] == "F_error").all()


def test_nonfinite_loss_is_an_f_row(tiny_domain_pair, tmp_path):
    log_dir = tmp_path / "s"
    assert run_cli("--problem", "mmd_deepmerge", "--data", tiny_domain_pair, "--log-dir",
                   log_dir, "--max-evals", 2, "--evaluator", "serial", "--search", "random",
                   "--set", "lambda_tl=1e39", *FAST) == 0
    frame = results(log_dir)
    assert len(frame) == 2 and (frame["objective"] == "F_nan").all()
    assert "p:lambda_tl" not in frame.columns  # fixed, not searched


def test_laptop_trials_see_the_same_images_whatever_the_batch_size(tiny_domain_pair, tmp_path):
    """The laptop budget caps images per epoch, not batches: batch 256 and 32 cost the same."""
    from search.cli import BUDGETS, parse_overrides
    from training.loop import run_trial
    from training.naming import problem_config
    from training.trainer import steps_cap

    seen = {}
    for batch in (32, 256):
        fixed = parse_overrides([f"batch_size={batch}"], "mmd_deepmerge", "laptop")
        config = problem_config("mmd_deepmerge", [f"{k}={v}" for k, v in fixed.items()])
        seen[batch] = steps_cap(config) * config.batch_size
    assert seen[32] == seen[256] == BUDGETS["laptop"]["max_images_per_epoch"]
    # The same rule in real trials (the tiny pair has 24 training rows: a cap of 16 images).
    steps = {}
    for batch in (4, 8):
        record = run_trial(problem_config("none_deepmerge", [
            "epochs=1", f"batch_size={batch}", "max_images_per_epoch=16"]),
            tiny_domain_pair, tmp_path / str(batch), progress=False)
        steps[batch] = record["history"][0]["train_steps"]
    assert steps[4] * 4 == steps[8] * 8 == 16


def test_budgets_are_listed_and_recorded(tiny_domain_pair, tmp_path, capsys):
    from search.cli import BUDGETS

    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in BUDGETS:
        assert f"  {name}: epochs=" in listed
    log_dir = tmp_path / "s"
    assert main(["--problem", "none_deepmerge", "--data", str(tiny_domain_pair),
                        "--log-dir", str(log_dir), "--evaluator", "serial", "--search",
                        "random", "--max-evals", "1", "--budget", "laptop", "--set",
                        "epochs=1", "--quiet"]) == 0
    meta = json.loads((log_dir / "search.json").read_text())
    assert meta["budget"] == {"name": "laptop", "values": BUDGETS["laptop"]}
    assert meta["fixed"]["max_images_per_epoch"] == BUDGETS["laptop"]["max_images_per_epoch"]
    assert meta["fixed"]["epochs"] == 1  # --set wins over the budget
