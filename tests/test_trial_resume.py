"""Preemption-safe trials (issue 15): a trial checkpoints every epoch into ``resume.pt`` and an
interrupted trial, started again in its folder, continues from its last completed epoch; on the
CPU its record and weights equal those of an uninterrupted run with the same seed.

Unit level: ``run_trial`` interrupted right after an epoch (an ``on_epoch`` callback raising a
``BaseException``, which nothing in the trial catches, as a kill would) and run again.
Search level: a ``search/run.py`` driver killed with SIGKILL while its trials run, then
``--resume``: the interrupted trials continue under their own job ids.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import training.loop as loop
from search.objectives import DEFAULT_OBJECTIVE, objective_value
from search.runner import EpochReporter
from training.config import TrainConfig
from training.loop import run_trial
from training.naming import problem_config
from training.record import read_record
from training.resume import RESUME, ResumeWarning, read_resume

REPO = Path(__file__).resolve().parents[1]
TINY = ["epochs=4", "batch_size=8", "max_batches_per_epoch=2", "patience=4"]
TIMINGS = ("train_time_s", "train_compute_s", "epoch_time_s")


class Killed(BaseException):
    """Stands for a kill: no ``except Exception`` of the trial catches it."""


def kill_at(epoch: int):
    """An ``on_epoch`` that 'kills' the trial after ``epoch`` trained (before its checkpoint)."""
    def on_epoch(done: int, interim) -> bool:
        if done == epoch:
            raise Killed
        return False
    return on_epoch


def comparable(record: dict) -> dict:
    """What must be equal between an interrupted-and-resumed trial and an uninterrupted one."""
    history = [{k: v for k, v in row.items() if k not in TIMINGS} for row in record["history"]]
    keep = ("status", "failure", "config", "metrics", "diagnostics", "best_epoch", "epochs_run",
            "data", "problem")
    return {"history": history, **{key: record[key] for key in keep}}


def assert_same_trial(resumed_dir: Path, reference_dir: Path) -> None:
    """Records (but timings, host, ``resumed``), weights and predictions are identical."""
    ours, theirs = read_record(resumed_dir), read_record(reference_dir)
    assert ours["status"] == "ok", ours["error"]
    assert comparable(ours) == comparable(theirs)
    a = torch.load(resumed_dir / "checkpoint.pt", weights_only=True)
    b = torch.load(reference_dir / "checkpoint.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    with np.load(resumed_dir / "predictions.npz") as p, np.load(reference_dir /
                                                                 "predictions.npz") as q:
        assert all(np.array_equal(p[k], q[k]) for k in q.files)
    assert not list(resumed_dir.glob(RESUME + "*"))  # removed once the record is written


@pytest.fixture(scope="module")
def references(tiny_domain_pair, tmp_path_factory):
    """Uninterrupted trials, one per problem and overrides (made on first use)."""
    made: dict[tuple, Path] = {}

    def get(problem: str, extra: tuple[str, ...] = ()) -> Path:
        if (problem, extra) not in made:
            made[problem, extra] = tmp_path_factory.mktemp(problem)
            run_trial(problem_config(problem, [*TINY, *extra]), tiny_domain_pair,
                      made[problem, extra], problem=problem, progress=False)
        return made[problem, extra]

    return get


# DANN: a domain classifier with its own parameter group, dropout (torch's global RNG) and a
# GRL coefficient that follows the step count; SIDDA: learned loss weights; none: no target;
# lr=0.02: the best epoch is 1, so the checkpoint of epoch 2 holds the best weights apart and
# a patience counter of 1, which ends the resumed run after epoch 3.
@pytest.mark.parametrize(("problem", "extra", "epochs_run"), [
    ("mmd_deepmerge", (), 4), ("dann_deepmerge", (), 4), ("sidda_deepmerge", (), 4),
    ("none_deepmerge", (), 4),
    ("mmd_deepmerge", ("lr=0.02", "patience=2", "stopping=patience"), 3),
], ids=["mmd", "dann", "sidda", "none", "mmd-early-stopping"])
def test_an_interrupted_trial_resumes_to_the_same_record(problem, extra, epochs_run,
                                                         tiny_domain_pair, tmp_path,
                                                         references):
    config = problem_config(problem, [*TINY, *extra])
    with pytest.raises(Killed):
        run_trial(config, tiny_domain_pair, tmp_path, problem=problem, progress=False,
                  on_epoch=kill_at(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [RESUME]  # no record yet
    saved = read_resume(tmp_path)
    assert saved["epoch"] == 2 and [row["epoch"] for row in saved["history"]] == [1, 2]
    record = run_trial(config, tiny_domain_pair, tmp_path, problem=problem, progress=False)
    assert [row["epoch"] for row in record["history"]] == list(range(1, epochs_run + 1))
    assert [r["from_epoch"] for r in record["resumed"]] == [2]  # epoch 3 trained once more
    reference = references(problem, extra)
    assert "resumed" not in read_record(reference)
    assert_same_trial(tmp_path, reference)
    if extra:
        assert saved["fit"]["best_epoch"] == 1 and saved["fit"]["waited"] == 1
        assert isinstance(saved["fit"]["best_state"], dict) and record["best_epoch"] == 1


def test_the_record_names_each_attempts_machine_and_compute_path(tiny_domain_pair, tmp_path):
    """``resumed[i].before``: the attempt that ran up to ``from_epoch`` (``None`` where its
    ``resume.pt`` predates the keys, as those of the paper study's first sittings do)."""
    config = problem_config("none_deepmerge", TINY)
    for old_file in (False, True):
        out = tmp_path / str(old_file)
        with pytest.raises(Killed):
            run_trial(config, tiny_domain_pair, out, progress=False, on_epoch=kill_at(3))
        saved = read_resume(out)
        assert saved["machine"] and "precision" in saved["compute_path"]
        if old_file:
            del saved["machine"], saved["compute_path"]
            torch.save(saved, out / RESUME)
        record = run_trial(config, tiny_domain_pair, out, progress=False)
        before = record["resumed"][0]["before"]
        if old_file:
            assert before == {"machine": None, "compute_path": None}
        else:
            assert before == {"machine": record["machine"],
                              "compute_path": record["compute_path"]}


@pytest.mark.slow
def test_a_compiled_trial_resumes_to_the_same_record(tiny_domain_pair, tmp_path, references):
    """``compile=1``: the resumed trial builds its compiled forward afresh (here: after
    ``torch._dynamo.reset()``, as a new process would) and loads the weights into the network
    it wraps."""
    extra = ("compile=1",)
    config = problem_config("dann_deepmerge", [*TINY, *extra])
    with pytest.raises(Killed):
        run_trial(config, tiny_domain_pair, tmp_path, progress=False, on_epoch=kill_at(3))
    torch._dynamo.reset()
    record = run_trial(config, tiny_domain_pair, tmp_path, problem="dann_deepmerge",
                       progress=False)
    assert [r["from_epoch"] for r in record["resumed"]] == [2]
    assert_same_trial(tmp_path, references("dann_deepmerge", extra))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_trial_resumes(tiny_domain_pair, tmp_path):
    """On a GPU the CUDA RNG is checkpointed too; results are close, not bit-exact (CUDA's
    deterministic mode only warns)."""
    config = problem_config("dann_deepmerge", [*TINY, "device=cuda"])
    reference = run_trial(config, tiny_domain_pair, tmp_path / "a", progress=False)
    with pytest.raises(Killed):
        run_trial(config, tiny_domain_pair, tmp_path / "b", progress=False,
                  on_epoch=kill_at(3))
    assert "cuda" in read_resume(tmp_path / "b")["trainer"]["rng"]
    record = run_trial(config, tiny_domain_pair, tmp_path / "b", progress=False)
    assert record["status"] == "ok" and record["resumed"][0]["from_epoch"] == 2
    assert [r["train_loss"] for r in record["history"]] == pytest.approx(
        [r["train_loss"] for r in reference["history"]], rel=1e-3)


def test_resume_pt_holds_the_whole_state(tiny_domain_pair, tmp_path):
    config = problem_config("dann_deepmerge", TINY)
    with pytest.raises(Killed):
        run_trial(config, tiny_domain_pair, tmp_path, progress=False, on_epoch=kill_at(2))
    saved = torch.load(tmp_path / RESUME, weights_only=True)  # tensors and plain values only
    assert {"format", "fingerprint", "problem", "config", "epoch", "trainer", "fit", "history",
            "elapsed_s", "resumed", "on_epoch", "host", "written_at"} <= set(saved)
    assert saved["config"] == config.to_dict() and saved["problem"] == "dann_deepmerge"
    assert {"model", "transfer", "optimizer", "scheduler", "step_count", "generator",
            "target_order", "target_pos", "rng"} <= set(saved["trainer"])
    assert saved["trainer"]["step_count"] == 2  # one epoch of max_batches_per_epoch=2
    assert any(k.startswith("domain_classifier") for k in saved["trainer"]["transfer"])
    assert len(saved["trainer"]["optimizer"]["param_groups"]) == 2  # network + classifier
    assert {"torch", "numpy", "python"} <= set(saved["trainer"]["rng"])
    fit = saved["fit"]
    assert fit["epoch"] == 1 and fit["best_epoch"] == 1 and fit["best_state"] == "model"
    assert fit["waited"] == 0 and not fit["done"] and saved["elapsed_s"] > 0


def test_killed_while_scoring_resumes_without_training(tiny_domain_pair, tmp_path, references,
                                                       monkeypatch):
    """After the last epoch's checkpoint (``done``), only the final evaluation is redone."""
    real = loop.score_and_write

    def killed(*args, **kwargs):
        raise Killed

    config = problem_config("mmd_deepmerge", TINY)
    reference = references("mmd_deepmerge")  # made before anything is patched
    monkeypatch.setattr(loop, "score_and_write", killed)
    with pytest.raises(Killed):
        run_trial(config, tiny_domain_pair, tmp_path, problem="mmd_deepmerge", progress=False)
    assert read_resume(tmp_path)["fit"]["done"] and read_resume(tmp_path)["epoch"] == 4
    monkeypatch.setattr(loop, "score_and_write", real)
    trained = []
    monkeypatch.setattr(loop.Trainer, "train_epoch",
                        lambda self, epoch: trained.append(epoch) or {})
    record = run_trial(config, tiny_domain_pair, tmp_path, problem="mmd_deepmerge",
                       progress=False)
    assert trained == [] and record["resumed"][0]["from_epoch"] == 4
    assert_same_trial(tmp_path, reference)


def test_a_foreign_or_damaged_resume_pt_is_ignored_with_a_warning(tiny_domain_pair, tmp_path):
    config = problem_config("none_deepmerge", [*TINY, "epochs=2"])
    with pytest.raises(Killed):
        run_trial(config, tiny_domain_pair, tmp_path, progress=False, on_epoch=kill_at(2))
    other = config.replace(lr=config.lr / 2)  # another configuration in the same folder
    with pytest.warns(ResumeWarning, match="fingerprint differs"):
        record = run_trial(other, tiny_domain_pair, tmp_path, progress=False)
    assert "resumed" not in record and [r["epoch"] for r in record["history"]] == [1, 2]
    assert not (tmp_path / RESUME).exists()
    (tmp_path / RESUME).write_bytes(b"not a checkpoint")
    with pytest.warns(ResumeWarning, match="cannot be read"):
        record = run_trial(config, tiny_domain_pair, tmp_path, progress=False)
    assert "resumed" not in record and record["status"] == "ok"
    with pytest.raises(Killed):
        run_trial(config, tiny_domain_pair, tmp_path, progress=False, on_epoch=kill_at(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # resume=False: start afresh without a word
        record = run_trial(config, tiny_domain_pair, tmp_path, progress=False, resume=False)
    assert "resumed" not in record


class FakeJob:
    """What ``EpochReporter`` uses of DeepHyper's ``RunningJob``."""

    def __init__(self):
        self.records, self.asked = [], 0

    def record(self, epoch, value):
        self.records.append((epoch, value))

    def stopped(self):
        self.asked += 1
        return False


def test_the_stopper_sees_the_whole_curve_of_a_resumed_trial():
    first = EpochReporter(FakeJob(), DEFAULT_OBJECTIVE)
    for epoch in (1, 2):
        first(epoch, lambda diagnostics=None, e=epoch: {
            "status": "ok", "metrics": {"source_val": {"accuracy": 0.5}},
            "diagnostics": {"feature_mmd_val": 0.1 * e}})
    state = first.state_dict()
    job = FakeJob()
    again = EpochReporter(job, DEFAULT_OBJECTIVE)
    again.load_state_dict(state)
    assert job.records == first.job.records and job.asked == 2  # replayed to the new stopper
    assert again.last == first.last


def test_a_search_trial_with_a_stopper_resumes_and_stops_on_time(tiny_domain_pair, tmp_path,
                                                                 monkeypatch):
    """Through the run function: the resumed trial's stopper (``epochs-3``) gets epochs 1-2
    replayed, so it stops the trial after epoch 3 as it would have without the interruption."""
    from deephyper.evaluator import RunningJob
    from deephyper.stopper import ConstantStopper

    from search.runner import TrialContext, run_trial_job

    def job():
        stopper = ConstantStopper(max_steps=4, stop_step=3)
        running = RunningJob(parameters={}, stopper=stopper)
        stopper.job = running
        return running

    context = TrialContext(problem="mmd_deepmerge", data_dir=str(tiny_domain_pair),
                           root=str(tmp_path), torch_threads=1,
                           fixed={"epochs": 4, "batch_size": 8, "max_batches_per_epoch": 2,
                                  "patience": 4})
    real = loop.fit

    def killed_after_epoch_2(*args, **kwargs):
        checkpoint = kwargs.get("checkpoint") or args[5]

        def then_kill(state):
            checkpoint(state)
            if state.epoch == 2:
                raise Killed
        return real(*args[:5], checkpoint=then_kill)

    monkeypatch.setattr(loop, "fit", killed_after_epoch_2)
    with pytest.raises(Killed):
        run_trial_job(job(), context)
    monkeypatch.setattr(loop, "fit", real)
    trial = tmp_path / "trials" / "0"
    assert read_resume(trial)["on_epoch"]["observed"][-1][0] == 2
    out = run_trial_job(job(), context)
    record = read_record(trial)
    assert out["metadata"]["status"] == "stopped" and record["epochs_run"] == 3
    assert record["resumed"][0]["from_epoch"] == 2 and isinstance(out["objective"], float)


def test_submit_reserved_reruns_a_job_under_its_own_id(tmp_path):
    """DeepHyper level: job 2 (interrupted) runs again as job 2; the total stays max_evals."""
    from deephyper.evaluator import Evaluator
    from deephyper.hpo import HpProblem

    from search.deephyper_adapter import ResumableRandomSearch, reserve_job_ids

    seen = []

    def run(job):
        seen.append((job["job_id"], job.parameters["x"]))
        return -((job.parameters["x"] - 0.3) ** 2)

    space = HpProblem()
    space.add_hyperparameter((0.0, 1.0), "x")
    first = ResumableRandomSearch(space, random_state=1, log_dir=str(tmp_path))
    first.search(Evaluator.create(run, method="thread", method_kwargs={"num_workers": 1}),
                 max_evals=2, max_evals_strict=True)
    evaluator = Evaluator.create(run, method="thread", method_kwargs={"num_workers": 1})
    reserve_job_ids(evaluator, 4, done_ids=[0, 1], resumed_ids=[2])  # 3: interrupted, skipped
    search = ResumableRandomSearch(space, random_state=2, log_dir=str(tmp_path),
                                   checkpoint_restart=True)
    search.resume_jobs = {2: {"x": 0.125}}
    search.search(evaluator, max_evals=4, max_evals_strict=True)
    results = pd.read_csv(tmp_path / "results.csv").set_index("job_id")
    assert sorted(results.index) == [0, 1, 2, 4]  # max_evals in all, 3 never reused
    assert results.loc[2, "p:x"] == 0.125
    assert results.loc[2, "objective"] == pytest.approx(-((0.125 - 0.3) ** 2))
    assert seen[2] == (2, 0.125)


# --- search level: kill -9 mid-trial, --resume --------------------------------------------

SEARCH_PROBLEM, SEARCH_EPOCHS, SEARCH_EVALS = "dann_deepmerge", 4, 2


def driver_command(data_dir, log_dir, *extra):
    return [sys.executable, "search/run.py", "--problem", SEARCH_PROBLEM, "--data",
            str(data_dir), "--log-dir", str(log_dir), "--max-evals", str(SEARCH_EVALS),
            "--evaluator", "process", "--workers", "2", "--search", "random",
            "--set", f"epochs={SEARCH_EPOCHS}", "--set", "max_batches_per_epoch=2",
            "--set", "batch_size=8", "--set", f"patience={SEARCH_EPOCHS}", *extra]


def checkpointed(log_dir: Path) -> dict[int, int]:
    """Running trials with an epoch checkpoint: job id -> last completed epoch."""
    found = {}
    for path in (log_dir / "trials").glob(f"*/{RESUME}"):
        if not (path.parent / "record.json").exists():
            with contextlib.suppress(Exception):  # replaced while read: look again later
                found[int(path.parent.name)] = read_resume(path.parent)["epoch"]
    return found


def test_kill_9_mid_trial_then_resume_continues_the_trial(tiny_domain_pair, tmp_path,
                                                          one_thread):
    log_dir = tmp_path / "search"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread per trial, as below
    driver = subprocess.Popen([*driver_command(tiny_domain_pair, log_dir), "--quiet"],
                              cwd=REPO, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while len(checkpointed(log_dir)) < 2:  # both workers' trials past an epoch
            assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no trial checkpointed an epoch"
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)  # the driver; its workers die with it
        driver.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.stderr.close()
    interrupted = checkpointed(log_dir)  # what the kill left: job id -> last epoch
    assert set(interrupted) == {0, 1} and not (log_dir / "results.csv").exists(), interrupted
    assert all(1 <= epoch <= SEARCH_EPOCHS for epoch in interrupted.values())

    resumed = subprocess.run(driver_command(tiny_domain_pair, log_dir, "--resume"), cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for job_id, epoch in interrupted.items():
        assert f"trial {job_id} continues after epoch {epoch} (resume.pt)" in resumed.stdout

    after = pd.read_csv(log_dir / "results.csv")
    assert len(after) == SEARCH_EVALS and after["job_id"].is_unique  # exact, no duplicate
    assert set(after["job_id"]) == {0, 1}  # the same two trials, no fresh configuration
    assert not list((log_dir / "trials").glob(f"*/{RESUME}*"))
    # The references on one torch thread (one_thread), as the search's trials were run.
    check_resumed_trials(tiny_domain_pair, log_dir, tmp_path, interrupted, after)


def check_resumed_trials(data_dir, log_dir, tmp_path, interrupted, after) -> None:
    """Each resumed trial continued after its epoch and equals an uninterrupted run."""
    rows = after.set_index("job_id")
    for job_id, epoch in interrupted.items():
        trial = log_dir / "trials" / str(job_id)
        record = read_record(trial)
        assert [r["from_epoch"] for r in record["resumed"]] == [epoch]  # not from epoch 1
        assert [row["epoch"] for row in record["history"]] == list(range(1, SEARCH_EPOCHS + 1))
        reference = tmp_path / f"reference_{job_id}"
        run_trial(TrainConfig.from_dict(record["config"]), data_dir, reference,
                  problem=SEARCH_PROBLEM, progress=False)
        assert_same_trial(trial, reference)
        assert rows.loc[job_id, "objective"] == pytest.approx(
            objective_value(DEFAULT_OBJECTIVE, record))
        for column in (c for c in after.columns if c.startswith("p:")):
            assert rows.loc[job_id, column] == pytest.approx(record["config"][column[2:]])
