"""Search algorithms: DeepHyper CBO (default) or random search, resumable.

CBO uses ``acq_optimizer="sampling"``: on 2 cores DeepHyper's default ``"mixedga"`` costs
1-1.6 s per ask/tell against 0.03-0.16 s (see ``benchmarks/bench_search.py``), which matters
when trials are short; with a handful of mixed hyperparameters and tens of evaluations,
sampling 10,000 candidates finds the acquisition maximum well enough. The problem's default
configuration (the baseline run) is the first point evaluated. The resumable variants live in
:mod:`search.deephyper_adapter` (they override DeepHyper internals).
"""

from __future__ import annotations

from typing import Any

from deephyper.hpo import HpProblem

from search.deephyper_adapter import ResumableCBO, ResumableRandomSearch

ACQ_OPTIMIZER = "sampling"
SEARCHES = ("cbo", "random")


def build_search(kind: str, space: HpProblem, log_dir: str, seed: int, max_evals: int,
                 restart: bool, stopper: Any = None) -> Any:
    """The DeepHyper search object.

    Args:
        kind: ``cbo`` or ``random``.
        space: the searched hyperparameters (fixed ones removed).
        log_dir: where DeepHyper writes ``results.csv``.
        seed: random state of the search.
        max_evals: total evaluations (sizes CBO's random initial design).
        restart: reload ``results.csv`` (``checkpoint_restart``) instead of starting afresh.
        stopper: a ``deephyper.stopper.Stopper`` (:mod:`search.stoppers`), or ``None``.

    Raises:
        ValueError: unknown ``kind`` (lists the valid ones).
    """
    common = {"log_dir": log_dir, "random_state": seed, "checkpoint_restart": restart,
              "stopper": stopper}
    if kind == "random":
        return ResumableRandomSearch(space, **common)
    if kind != "cbo":
        raise ValueError(f"unknown search {kind!r}; valid searches: {', '.join(SEARCHES)}")
    n_initial = max(2, min(2 * len(space) + 1, max_evals // 2))
    initial = [] if restart else [space.default_configuration]  # the baseline goes first
    return ResumableCBO(space, acq_optimizer=ACQ_OPTIMIZER, n_initial_points=n_initial,
                        initial_points=initial, **common)
