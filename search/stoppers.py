"""Early discarding of trials in a search: DeepHyper's own stoppers, by name.

A stopper watches the objective every trial reports after each epoch (the budget) and ends
trials that look worse than their competitors at the same budget, so a search spends its
epochs on the promising configurations. The run function (:func:`search.runner.run_trial_job`)
reports the search's label-free objective of the current weights on the validation splits
after every epoch (``job.record(epoch, objective)``) and ends the trial when ``job.stopped()``;
a stopped trial keeps its record (status ``stopped``, ``epochs_run``).

Names (``--stopper``):

- ``none``: every trial trains until its last epoch or its own early stopping.
- ``sha``: asynchronous successive halving (``SuccessiveHalvingStopper``; Li et al. 2020,
  "A System for Massively Parallel Hyperparameter Tuning", arXiv:1810.05934). Rungs at 1, 3,
  9, 27 ... epochs (``reduction_factor`` 3); at each rung a trial continues only if its
  objective is in the top third of those that reached the rung before it.
- ``median``: ``MedianStopper``: continue only while at or above the median of the other
  trials at the same epoch (after 10 competitors).
- ``epochs-K``: ``ConstantStopper``: every trial stops after K epochs (Egele et al. 2023,
  arXiv:2307.15422, the "i-epoch" baseline: rank configurations after K epochs).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["STOPPERS", "SHA_REDUCTION_FACTOR", "StopperError", "build_stopper", "check_stopper"]

STOPPERS = ("none", "sha", "median", "epochs-K")
SHA_REDUCTION_FACTOR = 3
MEDIAN_MIN_COMPETING = 10
_EPOCHS = re.compile(r"^epochs-(\d+)$")


class StopperError(ValueError):
    """An unknown stopper name, or one that does not fit the trials' epochs."""


def check_stopper(name: str, epochs: int) -> None:
    """Refuse an unknown ``name`` or an ``epochs-K`` with K outside ``[1, epochs)``.

    Raises:
        StopperError: with the valid names.
    """
    match = _EPOCHS.match(name)
    if match:
        k = int(match.group(1))
        if not 1 <= k < epochs:
            raise StopperError(f"--stopper {name}: K must be in [1, {epochs - 1}] for trials of "
                               f"{epochs} epochs")
    elif name not in ("none", "sha", "median"):
        raise StopperError(f"unknown stopper {name!r}; valid: none, sha, median, epochs-K "
                           "(e.g. epochs-3)")


def build_stopper(name: str, epochs: int) -> Any:
    """The DeepHyper stopper called ``name`` for trials of at most ``epochs`` epochs.

    Returns:
        ``None`` for ``none``, else a ``deephyper.stopper.Stopper``.

    Raises:
        StopperError: see :func:`check_stopper`.
    """
    check_stopper(name, epochs)
    if name == "none":
        return None
    from deephyper.stopper import ConstantStopper, MedianStopper, SuccessiveHalvingStopper

    if name == "sha":
        return SuccessiveHalvingStopper(max_steps=epochs, min_steps=1,
                                        reduction_factor=SHA_REDUCTION_FACTOR)
    if name == "median":
        return MedianStopper(max_steps=epochs, min_steps=1, min_competing=MEDIAN_MIN_COMPETING)
    return ConstantStopper(max_steps=epochs, stop_step=int(_EPOCHS.match(name).group(1)))
