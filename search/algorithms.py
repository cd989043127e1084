"""Search algorithms: DeepHyper CBO (default) or random search, resumable.

CBO uses ``acq_optimizer="sampling"``: on 2 cores DeepHyper's default ``"mixedga"`` costs
1-1.6 s per ask/tell against 0.03-0.16 s (see ``benchmarks/bench_search.py``), which matters
when trials are short; with a handful of mixed hyperparameters and tens of evaluations,
sampling 10,000 candidates finds the acquisition maximum well enough. The problem's default
configuration (the baseline run) is the first point evaluated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from deephyper.hpo import CBO, HpProblem, RandomSearch, Search

ACQ_OPTIMIZER = "sampling"
SEARCHES = ("cbo", "random")


def as_objective(value: Any) -> Any:
    """A numeric string read back from ``results.csv`` -> float; ``F_...`` stays a failure."""
    if isinstance(value, str) and not value.startswith("F"):
        try:
            return float(value)
        except ValueError:
            return value
    return value


class ResumableCBO(CBO):
    """CBO that also learns from reloaded successes when ``results.csv`` mixes ``F_`` rows.

    With a failure in ``results.csv`` pandas reads the whole ``objective`` column as strings,
    and DeepHyper 0.13.2's ``CBO._tell`` silently drops string objectives that do not start with
    ``"F"``: a resumed search would forget every completed trial. We convert them back.
    """

    def _tell(self, results: list) -> None:
        super()._tell([(config, as_objective(obj)) for config, obj in results])


class ResumableRandomSearch(RandomSearch):
    """Random search that accepts ``checkpoint_restart`` (0.13.2's ``RandomSearch`` does not).

    Without it, ``Search.__init__`` renames an existing ``results.csv`` instead of reloading it.
    """

    def __init__(self, problem: HpProblem, random_state: int | None = None, log_dir: str = ".",
                 checkpoint_restart: bool = False):
        Search.__init__(self, problem, random_state, log_dir,
                        checkpoint_restart=checkpoint_restart)
        self._problem.space.seed(self._random_state.randint(0, np.iinfo(np.int32).max))


def build_search(kind: str, space: HpProblem, log_dir: str, seed: int, max_evals: int,
                 restart: bool) -> Any:
    """The DeepHyper search object.

    Args:
        kind: ``cbo`` or ``random``.
        space: the searched hyperparameters (fixed ones removed).
        log_dir: where DeepHyper writes ``results.csv``.
        seed: random state of the search.
        max_evals: total evaluations (sizes CBO's random initial design).
        restart: reload ``results.csv`` (``checkpoint_restart``) instead of starting afresh.

    Raises:
        ValueError: unknown ``kind`` (lists the valid ones).
    """
    common = {"log_dir": log_dir, "random_state": seed, "checkpoint_restart": restart}
    if kind == "random":
        return ResumableRandomSearch(space, **common)
    if kind != "cbo":
        raise ValueError(f"unknown search {kind!r}; valid searches: {', '.join(SEARCHES)}")
    n_initial = max(2, min(2 * len(space) + 1, max_evals // 2))
    initial = [] if restart else [space.default_configuration]  # the baseline goes first
    return ResumableCBO(space, acq_optimizer=ACQ_OPTIMIZER, n_initial_points=n_initial,
                        initial_points=initial, **common)
