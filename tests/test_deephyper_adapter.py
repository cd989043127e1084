"""What ``search/deephyper_adapter.py`` assumes of DeepHyper's internals, checked one by one.

If a DeepHyper upgrade breaks one of these, this file fails with the name of the assumption;
``search/deephyper_adapter.py`` is then the one module to mend. A last test makes sure no
other module touches DeepHyper's private API.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import deephyper
import pandas as pd
import pytest
from deephyper.evaluator import Evaluator
from deephyper.hpo import CBO, HpProblem, RandomSearch, Search

from search.deephyper_adapter import (
    DEEPHYPER_VERSION,
    AtomicResultsMixin,
    ResumableCBO,
    ResumableRandomSearch,
    as_objective,
    process_storage,
    reserve_job_ids,
)

REPO = Path(__file__).resolve().parents[1]
PRIVATE = re.compile(r"\._storage\b|\._search_id\b|\bjob_id_gathered\b|_shared_memory_storage"
                     r"|\bdef _tell\b|Search\.__init__|\._problem\b|\._random_state\b"
                     r"|\._log_dir\b|dump_jobs_done_to_csv|to_csv_complete")


def quadratic(job):
    return -((job.parameters["x"] - 0.3) ** 2)


def space() -> HpProblem:
    problem = HpProblem()
    problem.add_hyperparameter((0.0, 1.0), "x", default_value=0.5)
    return problem


def test_the_version_the_adapter_was_written_for():
    assert deephyper.__version__ == DEEPHYPER_VERSION, (
        f"DeepHyper {deephyper.__version__} is installed; search/deephyper_adapter.py relies on "
        f"{DEEPHYPER_VERSION}'s internals: rerun this file and mend the adapter")


def test_reserve_job_ids_numbers_after_the_reserved_ones():
    evaluator = Evaluator.create(quadratic, method="thread", method_kwargs={"num_workers": 1})
    assert isinstance(evaluator.job_id_gathered, list)
    reserve_job_ids(evaluator, 3, done_ids=[0, 2])
    search_id = evaluator._search_id
    assert evaluator.job_id_gathered == [f"{search_id}.1"]
    assert evaluator._storage.create_new_job(search_id) == f"{search_id}.3"


def test_process_storage_is_a_deephyper_storage():
    from search.runner import set_pdeathsig

    storage = process_storage(set_pdeathsig)
    search_id = storage.create_new_search()
    assert storage.create_new_job(search_id) == f"{search_id}.0"


def test_cbo_tell_and_search_init_have_the_signatures_the_adapter_overrides():
    assert list(inspect.signature(CBO._tell).parameters) == ["self", "results"]
    assert "checkpoint_restart" in inspect.signature(Search.__init__).parameters
    # When RandomSearch accepts checkpoint_restart itself, ResumableRandomSearch is obsolete.
    assert "checkpoint_restart" not in inspect.signature(RandomSearch.__init__).parameters


def test_resumable_searches_reload_results_with_failures(tmp_path, monkeypatch):
    evaluator = Evaluator.create(quadratic, method="thread", method_kwargs={"num_workers": 1})
    search = ResumableCBO(space(), log_dir=str(tmp_path), random_state=1, n_initial_points=2,
                          acq_optimizer="sampling")
    search.search(evaluator, max_evals=4, max_evals_strict=True)
    frame = pd.read_csv(tmp_path / "results.csv")
    frame["objective"] = frame["objective"].astype(object)
    frame.loc[0, "objective"] = "F_nan"  # a failed row makes pandas read the column as strings
    frame.to_csv(tmp_path / "results.csv", index=False)
    told = []  # what reaches DeepHyper's own CBO._tell, after ResumableCBO's conversion
    original = CBO._tell

    def spy(self, results):
        told.extend(results)
        return original(self, results)

    monkeypatch.setattr(CBO, "_tell", spy)
    again = ResumableCBO(space(), log_dir=str(tmp_path), random_state=2, n_initial_points=2,
                         acq_optimizer="sampling", checkpoint_restart=True)
    evaluator = Evaluator.create(quadratic, method="thread", method_kwargs={"num_workers": 1})
    again.search(evaluator, max_evals=6, max_evals_strict=True)
    reloaded = [obj for _, obj in told[:4]]
    assert sum(isinstance(o, float) for o in reloaded) == 3, reloaded  # numbers, not strings
    assert as_objective("F_nan") == "F_nan"
    assert len(pd.read_csv(tmp_path / "results.csv")) == 6

    random = ResumableRandomSearch(space(), random_state=3, log_dir=str(tmp_path),
                                   checkpoint_restart=True)
    assert random._problem is not None and random._random_state is not None


def test_results_csv_is_always_complete_and_written_atomically(tmp_path, monkeypatch):
    """Every dump is the whole table, renamed into place: a write that fails leaves the last
    complete results.csv (DeepHyper rewrote it in place with "w", or appended)."""
    assert list(inspect.signature(Search.dump_jobs_done_to_csv).parameters) == ["self", "flush"]
    assert issubclass(ResumableCBO, AtomicResultsMixin)
    assert issubclass(ResumableRandomSearch, AtomicResultsMixin)
    seen = []

    def failing(job):  # every trial "fails": DeepHyper's own writer would write nothing yet
        seen.append(len(pd.read_csv(path)) if path.is_file() else 0)
        return "F_boom" if len(seen) < 3 else quadratic(job)

    path = tmp_path / "results.csv"
    evaluator = Evaluator.create(failing, method="thread", method_kwargs={"num_workers": 1})
    search = ResumableRandomSearch(space(), random_state=1, log_dir=str(tmp_path))
    search.search(evaluator, max_evals=4, max_evals_strict=True)
    assert seen == [0, 1, 2, 3]  # a row per gathered trial, failures included
    before = path.read_bytes()

    def broken(self, *args, **kwargs):
        Path(args[0]).write_text("p:x,obj")  # half a header, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="No space"):
        search.dump_jobs_done_to_csv()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temporary left


def test_no_other_module_touches_private_deephyper_api():
    offenders = []
    for path in sorted(REPO.glob("*/**/*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[0] in (".venv", "tests") or rel == Path("search/deephyper_adapter.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "private DeepHyper API outside the adapter:\n" + "\n".join(offenders)
