"""The search driver behind ``search/run.py`` (see that module for the command and its promises).

Everything heavy (pandas, DeepHyper, torch) is imported here, after :mod:`search.run` has set
the handlers that turn an early Ctrl-C or SIGTERM into one line and exit status 130 / 143.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from galaxies.atomic import write_error_message
from galaxies.pairs import data_identity, same_data
from galaxies.validate import InvalidDatasetError
from problems import Problem, UnknownProblemError, all_problems, get_problem
from search.algorithms import build_search
from search.cli import (
    BUDGETS,
    DEFAULT_BUDGET,
    CliError,
    budget_text,
    build_parser,
    check_args,
    parse_overrides,
)
from search.deephyper_adapter import reserve_job_ids
from search.logdir import (
    RESULTS,
    LogDirError,
    LogDirLock,
    LogDirState,
    apply_repair,
    inspect_log_dir,
    lock_log_dir,
    plan_repair,
    resumable_trials,
    write_search_json,
)
from search.runner import Resources, TrialContext, check_data, create_evaluator, shutdown
from search.signals import EXIT_ON_SIGNAL
from search.stoppers import StopperError, build_stopper, check_stopper
from search.summary import count_outcomes, summarize
from training.cli import resolve_data
from training.record import portable_path
from training.registry import get_method


class SearchInterrupted(BaseException):
    """SIGINT or SIGTERM reached the driver.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the way
    swallows it.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class InterruptHandler:
    """SIGINT/SIGTERM handlers of the driver: raise :class:`SearchInterrupted` once.

    A second signal while the driver stops exits at once. A process forked from the driver
    (a process-pool worker before its run function resets the handlers) does not raise:
    it ignores SIGINT, which the driver handles, and exits silently on SIGTERM.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.previous: dict[int, Any] = {}
        self.stopping = False
        self.running = False  # trials may be running (set by run_search)

    def __call__(self, signum: int, frame: Any) -> None:
        """The signal handler."""
        if os.getpid() != self.pid:
            if signum == signal.SIGTERM:
                os._exit(EXIT_ON_SIGNAL[signal.SIGTERM])
            return
        if self.stopping:
            os._exit(EXIT_ON_SIGNAL[signum])
        self.stopping = True
        raise SearchInterrupted(signum)

    def install(self) -> None:
        """Install (again: ``ray.init`` replaces the SIGTERM handler with its own)."""
        for signum in EXIT_ON_SIGNAL:
            previous = signal.signal(signum, self)
            self.previous.setdefault(signum, previous)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)


def list_problems() -> str:
    """Every problem with its search space (for ``--list``)."""
    blocks = []
    for problem in all_problems():
        table = pd.DataFrame(problem.describe()).to_string(index=False)
        summary = get_method(problem.method).summary
        blocks.append(f"{problem.name} (method={problem.method}, backbone={problem.backbone})"
                      + (f": {summary}" if summary else "") + f"\n{table}")
    return "\n\n".join(blocks)


def check_log_dir(state: LogDirState, log_dir: Path, args: Any, problem: Problem,
                  fixed: dict[str, Any], data: dict[str, Any] | None) -> None:
    """Refuse to overwrite results, or to resume a different search.

    The search's identity is its problem, fixed values, objective, stopper and data (the
    data's identity compared by ``galaxies.pairs.same_data``, not its path: a moved benchmark
    is the same data). ``data=None``: not checked (yet).

    Raises:
        CliError: results exist without ``--resume``; or the resumed search differs, or its
            ``search.json`` is missing.
    """
    if state.has_results and not args.resume:
        raise CliError(f"{log_dir} already holds a search ({state.n_done} completed trials); "
                       "continue it with --resume or choose a new --log-dir")
    if args.resume and state.has_results and not state.search:
        raise CliError(f"{log_dir / 'search.json'} is missing, so the search that {log_dir} "
                       "holds cannot be checked against this command. Fix: restore it from a "
                       "backup or start a new --log-dir")
    if args.resume and state.search:
        before = state.search
        old = (before.get("problem"), before.get("fixed"),
               before.get("objective", before.get("args", {}).get("objective")),
               before.get("stopper", "none"))
        new = (problem.name, fixed, args.objective, args.stopper)
        if old != new:
            raise CliError(f"--resume: {log_dir} holds (problem, fixed, objective, stopper) = "
                           f"{old}; this command asks for {new}; rerun the original command "
                           "with --resume")
        why = same_data(before.get("data"), data) if data is not None else None
        if why:
            raise CliError(f"--resume: {log_dir} was searched on other data than --data "
                           f"{args.data or 'the embedded benchmark'} (search.json: "
                           f"{before.get('data_dir')}; {why}). Fix: pass the search's own "
                           "--data, or start a new --log-dir")


def run_search(args: Any, problem: Problem, fixed: dict[str, Any], log_dir: Path,
               data_dir: str, state: LogDirState, resources: Resources,
               handler: InterruptHandler, resumed: dict[int, dict[str, Any]] | None = None,
               ) -> None:
    """Create the evaluator and search; run ``max_evals - completed`` more trials.

    ``resumed`` (:func:`search.logdir.resumable_trials`) are submitted first under their own
    job ids and count among those trials.
    """
    resumed = resumed or {}
    from deephyper.evaluator.callback import TqdmCallback

    context = TrialContext(problem=problem.name, data_dir=data_dir, root=str(log_dir),
                           objective=args.objective, fixed=fixed,
                           torch_threads=resources.torch_threads(),
                           die_with_driver=resources.evaluator == "process")
    callbacks = [] if args.quiet else [TqdmCallback()]
    handler.running = True  # from here on, stopping early kills trials
    evaluator = create_evaluator(context, resources, callbacks, args.quiet)
    handler.install()
    try:
        reserve_job_ids(evaluator, state.next_job_id, state.done_ids, resumed_ids=resumed)
        # A resumed search gets a new seed, so it does not replay the first run's random draws.
        seed = args.seed + len(state.search.get("runs", [])) if state.has_results else args.seed
        epochs = problem.defaults.replace(**fixed).epochs
        space = problem.subspace(fixed)
        # CBO's first point is the default configuration, unless a resumed trial is it.
        restart = (log_dir / RESULTS).is_file() or any(
            job["parameters"] == dict(space.default_configuration) for job in resumed.values())
        search = build_search(args.search, space, str(log_dir), seed, args.max_evals,
                              restart=restart, stopper=build_stopper(args.stopper, epochs))
        search.resume_jobs = {job_id: job["parameters"] for job_id, job in resumed.items()}
        # Strict mode caps (ids in storage - ids gathered before the search starts), i.e. the
        # reserved ids of interrupted trials do not count and the completed ones do: the cap
        # is the total, so a resumed search runs max_evals - completed more trials.
        search.search(evaluator, max_evals=args.max_evals, timeout=args.timeout,
                      max_evals_strict=True)
    finally:
        if not handler.stopping:
            shutdown(resources.evaluator)


def kill_trials(evaluator: str) -> None:
    """Kill the running trials now: process-pool workers (and the storage manager), Ray."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
    for child in multiprocessing.active_children():
        child.join(timeout=5)
    if evaluator == "ray":
        with contextlib.suppress(Exception):  # exiting anyway; Ray drops a dead driver's tasks
            shutdown("ray")


def stop(code: int, line: str, handler: InterruptHandler, evaluator: str) -> None:
    """Print one line on stderr and exit with ``code``; first kill the trials, if any run.

    Once trials run, the exit is ``os._exit``: a normal exit would wait for the evaluator's
    threads and processes, i.e. for the running trials to finish. Every file of the log folder
    is written atomically, so what is on disk is a resumable search.
    """
    if handler.running:
        kill_trials(evaluator)
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    if handler.running:
        os._exit(code)
    sys.exit(code)


def interrupted_line(signum: int, log_dir: Path, args: Any, problem: Problem,
                     fixed: dict[str, Any]) -> str:
    """``interrupted by SIGINT: N trials done in DIR; continue with --resume``.

    ``N`` counts what a resume keeps: the rows, and the finished trials it will recover.
    """
    try:
        state = inspect_log_dir(log_dir)
        repair = plan_repair(log_dir, state, problem.name, fixed, args.objective,
                             problem.subspace(fixed).hyperparameter_names)
        done = f"{state.n_done + len(repair.rows)} trials done in {portable_path(log_dir)}; "
    except (LogDirError, OSError):
        done = ""
    newline = "" if args.quiet else "\n"  # after a progress bar
    return f"{newline}interrupted by {signal.Signals(signum).name}: {done}continue with --resume"


def error(message: str) -> None:
    """One ``error:`` line on stderr and exit status 2 (no usage: the command line was fine)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``search/run.py``; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.list:
        print(list_problems())
        print(f"\nbudgets (--budget; default {DEFAULT_BUDGET}):\n{budget_text()}")
        return 0
    if not args.problem:
        parser.error("--problem is required (see --list)")
    try:
        problem = get_problem(args.problem)
        resources = check_args(args)
        fixed = parse_overrides(args.overrides, problem.name, args.budget)
        check_stopper(args.stopper, problem.defaults.replace(**fixed).epochs)
    except (UnknownProblemError, CliError, StopperError) as exc:
        error(str(exc))  # one line: the usage would hide it
    log_dir = Path(args.log_dir or f"runs/search/{problem.name}").resolve()
    handler = InterruptHandler()
    handler.install()
    lock: LogDirLock | None = None
    try:
        lock = lock_log_dir(log_dir)
        return _locked_main(args, argv, problem, fixed, resources, log_dir, handler)
    except LogDirError as exc:
        error(str(exc))
    except SearchInterrupted as exc:
        stop(EXIT_ON_SIGNAL[exc.signum], interrupted_line(exc.signum, log_dir, args, problem,
                                                           fixed), handler, resources.evaluator)
    except OSError as exc:  # disk full, read-only --log-dir: one line, no traceback
        message = write_error_message(exc, log_dir)
        if message is None:
            raise
        stop(2, f"error: {message}", handler, resources.evaluator)
    finally:
        if lock is not None:
            lock.release(discard=True)
        handler.restore()
    return 2  # not reached: error() and stop() exit


def _locked_main(args: Any, argv: list[str], problem: Problem, fixed: dict[str, Any],
                 resources: Resources, log_dir: Path, handler: InterruptHandler) -> int:
    """:func:`main` once the log folder is locked: check, repair, run, summarise."""
    searched = problem.subspace(fixed).hyperparameter_names
    try:
        state = inspect_log_dir(log_dir)
        check_log_dir(state, log_dir, args, problem, fixed, None)
        repair = (plan_repair(log_dir, state, problem.name, fixed, args.objective, searched)
                  if args.resume else None)
        n_done = state.n_done + (len(repair.rows) if repair else 0)
        data_dir = None if n_done >= args.max_evals else resolve_data(args.data)
        data = None
        if data_dir is not None:
            check_data(data_dir)
            data = data_identity(data_dir)
            check_log_dir(state, log_dir, args, problem, fixed, data)
    except (CliError, InvalidDatasetError) as exc:
        error(str(exc))
    if repair:
        apply_repair(log_dir, state, repair, searched)
        dropped = " (and dropped the partly written last row)" if repair.partial else ""
        print(f"resume: recovered {len(repair.rows)} finished trials {sorted(repair.rows)} "
              f"from their records{dropped}")
        state = inspect_log_dir(log_dir)
    resumed = (resumable_trials(log_dir, state, problem.name, fixed, searched,
                                limit=args.max_evals - state.n_done)
               if args.resume and data_dir is not None else {})
    if data_dir is not None:
        payload = {"problem": problem.name, "method": problem.method,
                   "backbone": problem.backbone, "fixed": fixed, "objective": args.objective,
                   "stopper": args.stopper,
                   "budget": {"name": args.budget, "values": BUDGETS[args.budget]},
                   "data_dir": portable_path(data_dir), "data": data,
                   "command": "python search/run.py " + shlex.join(argv),
                   "args": vars(args), "resume": args.resume, "space": problem.describe(),
                   "completed_before": state.n_done,
                   "interrupted_before": state.interrupted_ids,
                   "recovered_before": sorted(repair.rows) if repair else [],
                   "resumed_before": sorted(resumed),
                   "dropped_partial_row": repair.partial if repair else ""}
        write_search_json(log_dir, payload, state.search)
        if state.interrupted_ids and not args.quiet:
            skipped = [i for i in state.interrupted_ids if i not in resumed]
            print(f"resume: {state.n_done} completed trials kept"
                  + "".join(f"; trial {i} continues after epoch {job['epoch']} (resume.pt)"
                            for i, job in sorted(resumed.items()))
                  + (f"; interrupted trials {skipped} are not re-run (no usable resume.pt: "
                     "new configurations take their place)" if skipped else ""))
        start = time.monotonic()
        run_search(args, problem, fixed, log_dir, data_dir, state, resources, handler, resumed)
        elapsed = time.monotonic() - start
    else:
        elapsed = 0.0
        print(f"{portable_path(log_dir)}: {state.n_done} trials already completed "
              f"(--max-evals {args.max_evals}); nothing to run")
    outcomes = count_outcomes(log_dir)
    table = summarize(log_dir, k=args.top_k)
    stopped = f", {outcomes['stopped']} stopped early" if outcomes["stopped"] else ""
    print(f"\n{problem.name}: {outcomes['completed']} trials ({outcomes['failed']} failed"
          f"{stopped}) in {elapsed:.0f} s; results in {portable_path(log_dir)}")
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(table.to_string(index=False) if len(table) else "no successful trial")
    return 0


