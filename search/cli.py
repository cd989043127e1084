"""Command line of ``search/run.py``, and the runner flags it shares with ``search/seeds.py``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from search.algorithms import SEARCHES
from search.objectives import DEFAULT_OBJECTIVE, OBJECTIVES
from search.runner import EVALUATORS, Resources
from training.cli import (
    CliError,
    data_parent,
    problem_parent,
    quiet_parent,
    set_parent,
    typed_sets,
)

#: Named trial budgets (``--budget``): the fixed values each puts before the user's ``--set``.
#: ``laptop`` (the default, sized so that ``python search/run.py --problem mmd_resnet`` ends in
#: about 10 minutes on two cores, benchmarks/results/stopping-and-searches.md
#: "The first hour"): 2 epochs of at most
#: 1,024 source images each, whatever the batch size, so that every trial of a laptop search costs
#: about the same; ``paper``: the paper's full-length trials (30 epochs, full passes).
BUDGETS: dict[str, dict[str, Any]] = {
    "laptop": {"epochs": 2, "max_images_per_epoch": 1024, "max_batches_per_epoch": 0},
    "paper": {"epochs": 30, "max_images_per_epoch": 0, "max_batches_per_epoch": 0},
}
DEFAULT_BUDGET = "laptop"
DEFAULT_MAX_EVALS = 10


def budget_text() -> str:
    """The budgets in one line each (``--list`` and the help)."""
    return "\n".join(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                     for name, values in BUDGETS.items())


def runner_parent(default_evaluator: str = "process") -> argparse.ArgumentParser:
    """Where trials run: ``--evaluator``, ``--workers``, ``--ray-address``, ``--*-per-trial``."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--evaluator", choices=EVALUATORS, default=default_evaluator,
                   help="serial: one trial at a time in this process; process: a local process "
                   "pool (default); ray: a Ray cluster (--ray-address, else a private local one)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="trials at once (default: 2 for process, all cluster CPUs / "
                   "--cpus-per-trial for ray)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="address of a running Ray cluster (host:port); RAY_AUTH_MODE=token is "
                   "set for the driver when ~/.ray/auth_token exists and RAY_AUTH_MODE is unset")
    p.add_argument("--cpus-per-trial", type=float, default=1, metavar="F",
                   help="Ray CPUs reserved per trial (also its torch threads; default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0, metavar="F",
                   help="Ray GPUs reserved per trial (fractions share a GPU; default 0)")
    return p


def resources(args: argparse.Namespace) -> Resources:
    """The runner flags, checked.

    Raises:
        CliError: a count out of range or ``--ray-address`` without ``--evaluator ray``.
    """
    if args.workers is not None and args.workers < 1:
        raise CliError("--workers must be >= 1")
    if not (math.isfinite(args.gpus_per_trial) and math.isfinite(args.cpus_per_trial)) or (
            args.gpus_per_trial < 0 or args.cpus_per_trial <= 0):
        raise CliError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if args.ray_address and args.evaluator != "ray":
        raise CliError("--ray-address needs --evaluator ray")
    return Resources(args.evaluator, args.workers, args.ray_address, args.cpus_per_trial,
                     args.gpus_per_trial)


def build_parser() -> argparse.ArgumentParser:
    """The ``search/run.py`` argument parser."""
    p = argparse.ArgumentParser(
        prog="search/run.py",
        description="Hyperparameter search (DeepHyper) for one domain-adaptation problem. "
        "Writes <log-dir>/results.csv (DeepHyper), trials/<job_id>/record.json, search.json "
        "and summary.csv, and prints the best configurations.",
        epilog="Example: python search/run.py --problem mmd_deepmerge --max-evals 20 "
        "--budget paper. Budgets: " + "; ".join(
            f"{name} = " + ", ".join(f"{k}={v}" for k, v in values.items())
            for name, values in BUDGETS.items()) + " (--set overrides any of them).",
        parents=[problem_parent(required=False), data_parent(), runner_parent(),
                 set_parent("fix a hyperparameter instead of searching it, or set a "
                            "TrainConfig field that is not searched (e.g. epochs=5); "
                            "repeatable"), quiet_parent()],
    )
    p.add_argument("--list", action="store_true",
                   help="list the problems with their search spaces and exit")
    p.add_argument("--log-dir", metavar="DIR",
                   help="output folder (default: runs/search/<problem>)")
    p.add_argument("--budget", choices=list(BUDGETS), default=DEFAULT_BUDGET,
                   help=f"trial length: laptop (default; {BUDGETS['laptop']['epochs']} epochs "
                   f"of at most {BUDGETS['laptop']['max_images_per_epoch']} source images, any "
                   "batch size) or paper (30 full epochs); --set overrides either")
    p.add_argument("--max-evals", type=int, default=DEFAULT_MAX_EVALS, metavar="N",
                   help="total number of trials, including those of a resumed search "
                   f"(default {DEFAULT_MAX_EVALS})")
    p.add_argument("--timeout", type=int, metavar="SECONDS",
                   help="stop submitting trials after this many seconds (running ones finish)")
    p.add_argument("--search", choices=SEARCHES, default="cbo",
                   help="cbo: Bayesian optimisation (DeepHyper CBO, default); random: random "
                   "search")
    p.add_argument("--objective", choices=list(OBJECTIVES), default=DEFAULT_OBJECTIVE,
                   help=f"quantity to maximise (default {DEFAULT_OBJECTIVE}, label-free); "
                   "target_val_accuracy is an ORACLE that uses target labels")
    p.add_argument("--stopper", default="none", metavar="NAME",
                   help="early discarding of trials (DeepHyper's stoppers): none (default), "
                   "sha (successive halving), median, or epochs-K (stop every trial after K "
                   "epochs); trials report the objective after every epoch")
    p.add_argument("--resume", action="store_true",
                   help="continue the search in --log-dir: completed trials are kept and "
                   "never re-run; trials interrupted by a crash are replaced by new ones")
    p.add_argument("--seed", type=int, default=42, help="seed of the search algorithm "
                   "(trial seed: --set seed=N; default 42)")
    p.add_argument("--top-k", type=int, default=5, metavar="K",
                   help="configurations in summary.csv and the final table (default 5)")
    return p


def parse_overrides(items: list[str], problem: str,
                    budget: str = DEFAULT_BUDGET) -> dict[str, Any]:
    """Typed, validated ``--set`` values (the budget's values first, user values win).

    Raises:
        CliError: an unknown budget, a malformed item, unknown key, ``method``/``backbone``,
            or an invalid value; the message names the key.
    """
    if budget not in BUDGETS:
        raise CliError(f"unknown budget {budget!r}; valid: {', '.join(BUDGETS)}")
    fixed = [f"{key}={value}" for key, value in BUDGETS[budget].items()]
    return typed_sets(problem, [*fixed, *items])  # later items win, validated together


def check_args(args: argparse.Namespace) -> Resources:
    """Range checks argparse cannot express; the runner's resources.

    Raises:
        CliError: a count or a size out of range.
    """
    if args.max_evals < 1:
        raise CliError("--max-evals must be >= 1")
    if args.timeout is not None and args.timeout <= 0:
        raise CliError("--timeout must be > 0")
    if args.top_k < 1:
        raise CliError("--top-k must be >= 1")
    if not 0 <= args.seed < 2**32:
        raise CliError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.log_dir and Path(args.log_dir).exists() and not Path(args.log_dir).is_dir():
        raise CliError(f"--log-dir {args.log_dir} is a file. Fix: pass a folder path")
    return resources(args)
