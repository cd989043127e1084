"""Every use of DeepHyper 0.13.2's private API, in one module (and tested in one file).

What this project needs that DeepHyper does not offer publicly:

- :func:`reserve_job_ids`: a resumed search numbers its jobs after every id already on disk
  (so an interrupted trial's folder is never reused by another configuration), and counts the
  ids of interrupted trials that are not continued as gathered (or DeepHyper would wait for
  them forever: it collects jobs until gathered == ids in storage). Uses
  ``Evaluator._storage``, ``Evaluator._search_id`` and ``Evaluator.job_id_gathered``.
- :func:`submit_reserved`: submit interrupted trials again under their *own* reserved job
  ids (DeepHyper's ``submit`` always takes a new id), so that each continues in its
  ``trials/<id>`` folder from its ``resume.pt``. Their configurations are not asked of the
  optimiser; their results are gathered and told like any other. Mirrors
  ``Evaluator._create_tasks`` (``_create_job``, ``job_id_submitted``, ``jobs``,
  ``_on_launch``, ``_execute``, ``_tasks_running``, ``loop``, ``set_event_loop``); the
  resumable searches call it from ``reload_checkpoint`` (:attr:`AtomicResultsMixin.resume_jobs`),
  when DeepHyper has set up the evaluator for the search (job class, stopper, search).
- :func:`process_storage`: the process-pool evaluator's ``SharedMemoryStorage`` with a manager
  process that dies with the driver (``deephyper.evaluator.storage._shared_memory_storage``).
- :class:`ResumableCBO`: CBO that learns from reloaded successes when ``results.csv`` mixes
  ``F_`` rows (overrides ``CBO._tell``; with a failure in the file pandas reads the objective
  column as strings, and 0.13.2 silently drops string objectives not starting with ``"F"``).
- :class:`ResumableRandomSearch`: random search that accepts ``checkpoint_restart`` (0.13.2's
  ``RandomSearch.__init__`` does not pass it on; uses ``Search.__init__``, ``_problem`` and
  ``_random_state``).
- Both write ``results.csv`` atomically (:class:`AtomicResultsMixin`): DeepHyper rewrites the
  whole file in place (``"w"``) on its first dump after a restart and at the end, and appends
  otherwise, so a kill or a full disk during a write left a truncated file. Every dump is now
  the complete table (``SearchHistory.to_dataframe``, what DeepHyper writes at the end anyway)
  into a temporary sibling, renamed over ``results.csv``. Overrides
  ``Search.dump_jobs_done_to_csv`` and the instance's ``history.to_csv_complete``; uses
  ``is_master``, ``checkpoint_history_to_csv``, ``_log_dir`` and ``history``.

``tests/test_deephyper_adapter.py`` checks each of these assumptions, so an upgrade of
DeepHyper that breaks one fails there, by name, rather than somewhere in a search.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from deephyper.evaluator import Evaluator
from deephyper.hpo import CBO, HpProblem, RandomSearch, Search

__all__ = [
    "DEEPHYPER_VERSION",
    "AtomicResultsMixin",
    "ResumableCBO",
    "ResumableRandomSearch",
    "as_objective",
    "process_storage",
    "reserve_job_ids",
    "submit_reserved",
]

DEEPHYPER_VERSION = "0.13.2"  # the version whose internals this module was written against


def reserve_job_ids(evaluator: Evaluator, next_job_id: int, done_ids: Iterable[int],
                    resumed_ids: Iterable[int] = ()) -> None:
    """Make the evaluator's next job id ``next_job_id`` and mark unfinished ids as gathered.

    With ``max_evals_strict`` DeepHyper then caps ``ids in storage - ids gathered before the
    search starts``: completed and resumed trials count towards ``max_evals``, the other
    interrupted ones do not.

    Args:
        evaluator: a fresh evaluator (no job submitted yet).
        next_job_id: first id no earlier trial used.
        done_ids: ids whose trials completed (they are reloaded from ``results.csv``).
        resumed_ids: interrupted ids that :func:`submit_reserved` runs again (not gathered).
    """
    for _ in range(next_job_id):
        evaluator._storage.create_new_job(evaluator._search_id)
    skip = set(done_ids) | set(resumed_ids)
    evaluator.job_id_gathered.extend(
        f"{evaluator._search_id}.{i}" for i in range(next_job_id) if i not in skip)


def submit_reserved(evaluator: Evaluator, jobs: Mapping[int, dict[str, Any]]) -> None:
    """Submit ``{job id: parameters}`` under those reserved ids (see the module docstring).

    Args:
        evaluator: the search's evaluator, after :func:`reserve_job_ids` reserved the ids with
            them in ``resumed_ids``.
        jobs: the run function's parameters of each job (the searched values).
    """
    evaluator.set_event_loop()
    for number, args in sorted(jobs.items()):
        job_id = f"{evaluator._search_id}.{number}"
        evaluator._storage.store_job_in(job_id, args=(args,))
        job = evaluator._create_job(job_id, args, evaluator.run_function, evaluator._storage)
        evaluator.job_id_submitted.append(job_id)
        job.context.search = evaluator.search
        evaluator.jobs.append(job)
        evaluator._on_launch(job)
        evaluator._tasks_running.append(evaluator.loop.create_task(evaluator._execute(job)))


def process_storage(initializer: Callable[[], None] | None = None) -> Any:
    """DeepHyper's ``SharedMemoryStorage``; its manager process first runs ``initializer``.

    The process evaluator passes :func:`search.runner.set_pdeathsig`, so that the manager dies
    with the driver.
    """
    from deephyper.evaluator.storage._shared_memory_storage import BaseManager

    manager = BaseManager()
    manager.start(initializer=initializer)
    return manager.MemoryStorage()  # the proxy keeps a reference to its manager


def as_objective(value: Any) -> Any:
    """A numeric string read back from ``results.csv`` -> float; ``F_...`` stays a failure."""
    if isinstance(value, str) and not value.startswith("F"):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def write_history_csv(history: Any, path: str | os.PathLike) -> Any:
    """Write a ``SearchHistory`` as ``path`` atomically; returns its data frame."""
    from galaxies.atomic import atomic_path

    frame = history.to_dataframe()
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


class AtomicResultsMixin:
    """Every ``results.csv`` write of a DeepHyper search is complete and atomic.

    Also where a resumed search re-submits its interrupted trials: set :attr:`resume_jobs`
    (``{job id: parameters}``) before ``search()``; they are submitted under their own ids
    (:func:`submit_reserved`) right after ``results.csv`` is reloaded.
    """

    resume_jobs: Mapping[int, dict[str, Any]] = {}

    def reload_checkpoint(self) -> None:
        """DeepHyper's reload of ``results.csv``, then :attr:`resume_jobs` are submitted."""
        super().reload_checkpoint()
        if self.resume_jobs:
            submit_reserved(self._evaluator, self.resume_jobs)
            self.resume_jobs = {}

    def _make_results_atomic(self) -> None:
        history = self.history
        history.to_csv_complete = lambda path: write_history_csv(history, path)

    def dump_jobs_done_to_csv(self, flush: bool = False) -> None:
        """Write every gathered job (``flush`` is moot: each dump is the whole table)."""
        if self.is_master and self.checkpoint_history_to_csv and len(self.history):
            write_history_csv(self.history, os.path.join(self._log_dir, "results.csv"))


class ResumableCBO(AtomicResultsMixin, CBO):
    """CBO that also learns from reloaded successes when ``results.csv`` mixes ``F_`` rows."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._make_results_atomic()

    def _tell(self, results: list) -> None:
        super()._tell([(config, as_objective(obj)) for config, obj in results])


class ResumableRandomSearch(AtomicResultsMixin, RandomSearch):
    """Random search that accepts ``checkpoint_restart`` (0.13.2's ``RandomSearch`` does not).

    Without it, ``Search.__init__`` renames an existing ``results.csv`` instead of reloading it.
    """

    def __init__(self, problem: HpProblem, random_state: int | None = None, log_dir: str = ".",
                 checkpoint_restart: bool = False, stopper: Any = None):
        Search.__init__(self, problem, random_state, log_dir, stopper=stopper,
                        checkpoint_restart=checkpoint_restart)
        self._problem.space.seed(self._random_state.randint(0, np.iinfo(np.int32).max))
        self._make_results_atomic()
