"""Objectives: a trial record -> one number that the search MAXIMISES.

Registry (``OBJECTIVES``; unknown name -> error listing the valid ones):

- ``source_val_accuracy``: accuracy on the labelled source validation split. Ignores the
  target entirely.
- ``source_val_acc_minus_mmd`` (default, label-free): source validation accuracy minus
  ``beta * feature_mmd_val``, the MMD between source and target validation features of the
  trained model (``record["diagnostics"]["feature_mmd_val"]``). Rewards a classifier whose
  features are also domain-invariant.
- ``neg_target_entropy`` (label-free): minus the mean prediction entropy on the target
  validation split (``record["diagnostics"]["target_val_entropy"]``); confident target
  predictions score higher.
- ``target_val_accuracy``: ORACLE. Needs target labels, which a real domain-adaptation setting
  does not have; use it only as an opt-in upper bound for comparison, never as the default.

Which label-free objective ranks trials best by target test accuracy is measured with
:mod:`search.objective_study` on a finished search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

DEFAULT_OBJECTIVE = "source_val_acc_minus_mmd"
MMD_BETA = 1.0  # weight of the feature MMD in ``source_val_acc_minus_mmd``
ORACLES = frozenset({"target_val_accuracy"})


def _accuracy(record: dict[str, Any], split: str) -> float:
    return float(record["metrics"][split]["accuracy"])


def source_val_accuracy(record: dict[str, Any]) -> float:
    """Source validation accuracy."""
    return _accuracy(record, "source_val")


def source_val_acc_minus_mmd(record: dict[str, Any], beta: float = MMD_BETA) -> float:
    """Source validation accuracy minus ``beta`` times the source/target feature MMD."""
    return _accuracy(record, "source_val") - beta * float(record["diagnostics"]["feature_mmd_val"])


def neg_target_entropy(record: dict[str, Any]) -> float:
    """Minus the mean prediction entropy on the (unlabelled) target validation split."""
    return -float(record["diagnostics"]["target_val_entropy"])


def target_val_accuracy(record: dict[str, Any]) -> float:
    """ORACLE: target validation accuracy (uses target labels; opt-in comparison only)."""
    return _accuracy(record, "target_val")


OBJECTIVES: dict[str, Callable[[dict[str, Any]], float]] = {
    "source_val_accuracy": source_val_accuracy,
    "source_val_acc_minus_mmd": source_val_acc_minus_mmd,
    "neg_target_entropy": neg_target_entropy,
    "target_val_accuracy": target_val_accuracy,
}


def get_objective(name: str) -> Callable[[dict[str, Any]], float]:
    """The objective function called ``name``.

    Raises:
        KeyError: unknown name (the message lists the valid ones).
    """
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; valid objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def objective_value(name: str, record: dict[str, Any]) -> float | None:
    """``name`` computed from an ``ok`` record; ``None`` if missing or not finite."""
    if record.get("status") != "ok":
        return None
    try:
        value = get_objective(name)(record)
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
