"""Run a hyperparameter search: ``python search/run.py --problem mmd_resnet``.

One DeepHyper search (CBO or random) over one problem (``problems``), each trial trained by
``training.loop.run_trial`` through :func:`search.run_function.run_trial_job`. Outputs in the
log folder (see :mod:`search.logdir`); the best configurations are printed at the end.
Exit status: 0 done, 2 bad command line or unusable log folder.

Resume (``--resume``): DeepHyper's ``checkpoint_restart`` reloads ``results.csv`` (every
completed trial, told again to the optimiser; none is re-run). ``--max-evals`` is the total,
so a search of 8 that died after 5 runs 3 more. Trials that were running when the driver died
did not complete: their folders stay, their ids are skipped, fresh configurations replace them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from problems import PROBLEMS, Problem, UnknownProblemError, get_problem
from search.algorithms import build_search
from search.cli import CliError, build_parser, check_args, parse_overrides
from search.evaluators import create_evaluator, shutdown, torch_threads_per_trial
from search.logdir import RESULTS, LogDirState, inspect_log_dir, write_search_json
from search.summary import count_outcomes, summarize


def list_problems() -> str:
    """Every problem with its search space (for ``--list``)."""
    blocks = []
    for problem in PROBLEMS.values():
        table = pd.DataFrame(problem.describe()).to_string(index=False)
        blocks.append(f"{problem.name} (method={problem.method}, backbone={problem.backbone})\n"
                      f"{table}")
    return "\n\n".join(blocks)


def resolve_data(data: str | None) -> str:
    """The data folder: ``--data`` (must hold source.h5 and target.h5) or the benchmark."""
    from galaxies.schema import domain_paths

    if data is None:
        from galaxies.benchmark import ensure_benchmark

        return str(Path(ensure_benchmark()).resolve())
    missing = [str(p) for p in domain_paths(data).values() if not Path(p).is_file()]
    if missing:
        raise CliError(f"--data {data}: missing {', '.join(missing)}")
    return str(Path(data).resolve())


def check_log_dir(state: LogDirState, log_dir: Path, args: Any, problem: Problem,
                  fixed: dict[str, Any]) -> None:
    """Refuse to overwrite results, or to resume a different search.

    Raises:
        CliError: results exist without ``--resume``; or the resumed search differs.
    """
    if state.has_results and not args.resume:
        raise CliError(f"{log_dir} already holds a search ({state.n_done} completed trials); "
                       "continue it with --resume or choose a new --log-dir")
    if args.resume and state.search:
        before = state.search
        old = (before.get("problem"), before.get("fixed"), before.get("args", {}).get("objective"))
        new = (problem.name, fixed, args.objective)
        if old != new:
            raise CliError(f"--resume: {log_dir} holds (problem, fixed, objective) = {old}; this "
                           f"command asks for {new}; rerun the original command with --resume")


def run_search(args: Any, problem: Problem, fixed: dict[str, Any], log_dir: Path,
               data_dir: str, state: LogDirState) -> None:
    """Create the evaluator and search; run ``max_evals - completed`` more trials."""
    from deephyper.evaluator.callback import TqdmCallback

    workers = args.workers or (2 if args.evaluator == "process" else None)
    context = {
        "problem": problem.name, "data_dir": data_dir, "log_dir": str(log_dir),
        "objective": args.objective, "fixed": fixed,
        "torch_threads": torch_threads_per_trial(args.evaluator, workers or 1,
                                                 args.cpus_per_trial),
        "die_with_driver": args.evaluator == "process",
    }
    callbacks = [] if args.quiet else [TqdmCallback()]
    evaluator = create_evaluator(args.evaluator, context, workers, args.ray_address,
                                 args.cpus_per_trial, args.gpus_per_trial, callbacks, args.quiet)
    try:
        # Job ids continue after every id already on disk, so an interrupted trial's folder is
        # never reused; DeepHyper's checkpoint_restart then skips its own counter reset.
        for _ in range(state.next_job_id):
            evaluator._storage.create_new_job(evaluator._search_id)
        # Reserved ids of interrupted trials count as gathered, or DeepHyper would wait for them
        # forever (it collects jobs until gathered == ids in storage).
        done = set(state.done_ids)
        evaluator.job_id_gathered.extend(
            f"{evaluator._search_id}.{i}" for i in range(state.next_job_id) if i not in done)
        # A resumed search gets a new seed, so it does not replay the first run's random draws.
        seed = args.seed + len(state.search.get("runs", [])) if state.has_results else args.seed
        search = build_search(args.search, problem.subspace(fixed), str(log_dir), seed,
                              args.max_evals, restart=(log_dir / RESULTS).is_file())
        # Strict mode caps (ids in storage - ids gathered before the search starts), i.e. the
        # reserved ids of interrupted trials do not count and the completed ones do: the cap
        # is the total, so a resumed search runs max_evals - completed more trials.
        search.search(evaluator, max_evals=args.max_evals, timeout=args.timeout,
                      max_evals_strict=True)
    finally:
        shutdown(args.evaluator)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``search/run.py``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(list_problems())
        return 0
    if not args.problem:
        parser.error("--problem is required (see --list)")
    try:
        problem = get_problem(args.problem)
        check_args(args)
        fixed = parse_overrides(args.overrides, problem)
        log_dir = Path(args.log_dir or f"runs/search/{problem.name}").resolve()
        state = inspect_log_dir(log_dir)
        check_log_dir(state, log_dir, args, problem, fixed)
        data_dir = None if state.n_done >= args.max_evals else resolve_data(args.data)
    except (UnknownProblemError, CliError) as exc:
        parser.error(str(exc))
    log_dir.mkdir(parents=True, exist_ok=True)
    if data_dir is not None:
        payload = {"problem": problem.name, "method": problem.method,
                   "backbone": problem.backbone, "fixed": fixed, "data_dir": data_dir,
                   "args": vars(args), "argv": sys.argv if argv is None else list(argv),
                   "space": problem.describe(), "completed_before": state.n_done,
                   "interrupted_before": state.interrupted_ids}
        write_search_json(log_dir, payload, state.search)
        if state.interrupted_ids and not args.quiet:
            print(f"resume: {state.n_done} completed trials kept; interrupted trials "
                  f"{state.interrupted_ids} are not re-run (new configurations replace them)")
        start = time.monotonic()
        run_search(args, problem, fixed, log_dir, data_dir, state)
        elapsed = time.monotonic() - start
    else:
        elapsed = 0.0
        print(f"{log_dir}: {state.n_done} trials already completed (--max-evals "
              f"{args.max_evals}); nothing to run")
    outcomes = count_outcomes(log_dir)
    table = summarize(log_dir, k=args.top_k)
    print(f"\n{problem.name}: {outcomes['completed']} trials ({outcomes['failed']} failed) "
          f"in {elapsed:.0f} s; results in {log_dir}")
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(table.to_string(index=False) if len(table) else "no successful trial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
