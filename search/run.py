"""Run a hyperparameter search: ``python search/run.py --problem mmd_resnet``.

One DeepHyper search (CBO or random) over one problem (``problems``), each trial trained by
``training.loop.run_trial`` through :func:`search.runner.run_trial_job`. Outputs in the
log folder (see :mod:`search.logdir`); the best configurations are printed at the end.
Exit status: 0 done, 2 bad command line or unusable log folder. A resumed search must keep its
problem, fixed values, objective and data (checked against ``search.json``).

Resume (``--resume``): DeepHyper's ``checkpoint_restart`` reloads ``results.csv`` (every
completed trial, told again to the optimiser; none is re-run). ``--max-evals`` is the total,
so a search of 8 that died after 5 runs 3 more. Trials that were running when the driver died
did not complete: their folders stay, their ids are skipped, fresh configurations replace them.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from problems import Problem, UnknownProblemError, all_problems, get_problem
from search.algorithms import build_search
from search.cli import CliError, build_parser, check_args, parse_overrides
from search.deephyper_adapter import reserve_job_ids
from search.logdir import RESULTS, LogDirState, data_identity, inspect_log_dir, write_search_json
from search.runner import Resources, TrialContext, create_evaluator, shutdown
from search.stoppers import StopperError, build_stopper, check_stopper
from search.summary import count_outcomes, summarize
from training.cli import resolve_data
from training.record import portable_path
from training.registry import get_method


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
    data's identity, not its path: a moved benchmark is the same data).

    Raises:
        CliError: results exist without ``--resume``; or the resumed search differs.
    """
    if state.has_results and not args.resume:
        raise CliError(f"{log_dir} already holds a search ({state.n_done} completed trials); "
                       "continue it with --resume or choose a new --log-dir")
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
        if data is not None and before.get("data") and before["data"] != data:
            raise CliError(f"--resume: {log_dir} was searched on other data than --data "
                           f"{args.data or 'the embedded benchmark'} (search.json: "
                           f"{before.get('data_dir')}); pass the search's own data")


def run_search(args: Any, problem: Problem, fixed: dict[str, Any], log_dir: Path,
               data_dir: str, state: LogDirState, resources: Resources) -> None:
    """Create the evaluator and search; run ``max_evals - completed`` more trials."""
    from deephyper.evaluator.callback import TqdmCallback

    context = TrialContext(problem=problem.name, data_dir=data_dir, root=str(log_dir),
                           objective=args.objective, fixed=fixed,
                           torch_threads=resources.torch_threads(),
                           die_with_driver=resources.evaluator == "process")
    callbacks = [] if args.quiet else [TqdmCallback()]
    evaluator = create_evaluator(context, resources, callbacks, args.quiet)
    try:
        reserve_job_ids(evaluator, state.next_job_id, state.done_ids)
        # A resumed search gets a new seed, so it does not replay the first run's random draws.
        seed = args.seed + len(state.search.get("runs", [])) if state.has_results else args.seed
        epochs = problem.defaults.replace(**fixed).epochs
        search = build_search(args.search, problem.subspace(fixed), str(log_dir), seed,
                              args.max_evals, restart=(log_dir / RESULTS).is_file(),
                              stopper=build_stopper(args.stopper, epochs))
        # Strict mode caps (ids in storage - ids gathered before the search starts), i.e. the
        # reserved ids of interrupted trials do not count and the completed ones do: the cap
        # is the total, so a resumed search runs max_evals - completed more trials.
        search.search(evaluator, max_evals=args.max_evals, timeout=args.timeout,
                      max_evals_strict=True)
    finally:
        shutdown(resources.evaluator)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``search/run.py``; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.list:
        print(list_problems())
        return 0
    if not args.problem:
        parser.error("--problem is required (see --list)")
    try:
        problem = get_problem(args.problem)
        resources = check_args(args)
        fixed = parse_overrides(args.overrides, problem.name)
        check_stopper(args.stopper, problem.defaults.replace(**fixed).epochs)
        log_dir = Path(args.log_dir or f"runs/search/{problem.name}").resolve()
        state = inspect_log_dir(log_dir)
        data_dir = None if state.n_done >= args.max_evals else resolve_data(args.data)
        data = data_identity(data_dir) if data_dir else None
        check_log_dir(state, log_dir, args, problem, fixed, data)
    except (UnknownProblemError, CliError, StopperError) as exc:
        parser.error(str(exc))
    log_dir.mkdir(parents=True, exist_ok=True)
    if data_dir is not None:
        payload = {"problem": problem.name, "method": problem.method,
                   "backbone": problem.backbone, "fixed": fixed, "objective": args.objective,
                   "stopper": args.stopper,
                   "data_dir": portable_path(data_dir), "data": data,
                   "command": "python search/run.py " + shlex.join(argv),
                   "args": vars(args), "resume": args.resume, "space": problem.describe(),
                   "completed_before": state.n_done,
                   "interrupted_before": state.interrupted_ids}
        write_search_json(log_dir, payload, state.search)
        if state.interrupted_ids and not args.quiet:
            print(f"resume: {state.n_done} completed trials kept; interrupted trials "
                  f"{state.interrupted_ids} are not re-run (new configurations replace them)")
        start = time.monotonic()
        run_search(args, problem, fixed, log_dir, data_dir, state, resources)
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


if __name__ == "__main__":
    sys.exit(main())
