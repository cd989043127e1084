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
- ``neg_source_val_loss`` (label-free): minus the source validation cross-entropy
  (``source_val_loss``), the early-stopping signal.
- ``neg_feature_mmd`` (label-free): minus ``feature_mmd_val`` alone.
- ``im`` (label-free): information maximisation on the target validation predictions,
  ``H(mean_i p_i) - mean_i H(p_i)`` (``target_val_im``; Gomes et al. 2010, Shi & Sha 2012).
- ``snd`` (label-free): soft neighbourhood density of the target validation features,
  mean entropy of the softmax (temperature 0.05) over cosine similarities to the other rows
  (``target_val_snd``; Saito et al. 2021).
- ``bnm`` (label-free): batch nuclear-norm of the ``[N, 2]`` target validation probability
  matrix over ``N`` (``target_val_bnm``; Cui et al. 2020).
- ``neg_dev_risk`` (label-free): minus the deep-embedded-validation risk, the source
  validation loss importance-weighted towards the target by a domain classifier on the
  validation features, with the control variate (``dev_risk``; You et al. 2019).
- ``target_val_accuracy``: ORACLE. Needs target labels, which a real domain-adaptation setting
  does not have; use it only as an opt-in upper bound for comparison, never as the default.

The validators' formulas, subsampling and degenerate cases are documented in
:mod:`training.validators`; a value that is missing (e.g. a classical-baseline record) or
not finite makes :func:`objective_value` return ``None`` (the trial cannot be selected).
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


def _diagnostic(record: dict[str, Any], key: str) -> float:
    return float(record["diagnostics"][key])


def source_val_accuracy(record: dict[str, Any]) -> float:
    """Source validation accuracy."""
    return _accuracy(record, "source_val")


def source_val_acc_minus_mmd(record: dict[str, Any], beta: float = MMD_BETA) -> float:
    """Source validation accuracy minus ``beta`` times the source/target feature MMD."""
    return _accuracy(record, "source_val") - beta * float(record["diagnostics"]["feature_mmd_val"])


def neg_target_entropy(record: dict[str, Any]) -> float:
    """Minus the mean prediction entropy on the (unlabelled) target validation split."""
    return -float(record["diagnostics"]["target_val_entropy"])


def neg_source_val_loss(record: dict[str, Any]) -> float:
    """Minus the source validation cross-entropy."""
    return -_diagnostic(record, "source_val_loss")


def neg_feature_mmd(record: dict[str, Any]) -> float:
    """Minus the source/target validation feature MMD."""
    return -_diagnostic(record, "feature_mmd_val")


def im(record: dict[str, Any]) -> float:
    """Information maximisation on the target validation predictions (higher is better)."""
    return _diagnostic(record, "target_val_im")


def snd(record: dict[str, Any]) -> float:
    """Soft neighbourhood density of the target validation features (higher is better)."""
    return _diagnostic(record, "target_val_snd")


def bnm(record: dict[str, Any]) -> float:
    """Batch nuclear-norm of the target validation probabilities (higher is better)."""
    return _diagnostic(record, "target_val_bnm")


def neg_dev_risk(record: dict[str, Any]) -> float:
    """Minus the deep-embedded-validation risk (the risk: lower is better)."""
    return -_diagnostic(record, "dev_risk")


def target_val_accuracy(record: dict[str, Any]) -> float:
    """ORACLE: target validation accuracy (uses target labels; opt-in comparison only)."""
    return _accuracy(record, "target_val")


OBJECTIVES: dict[str, Callable[[dict[str, Any]], float]] = {
    "source_val_accuracy": source_val_accuracy,
    "source_val_acc_minus_mmd": source_val_acc_minus_mmd,
    "neg_target_entropy": neg_target_entropy,
    "neg_source_val_loss": neg_source_val_loss,
    "neg_feature_mmd": neg_feature_mmd,
    "im": im,
    "snd": snd,
    "bnm": bnm,
    "neg_dev_risk": neg_dev_risk,
    "target_val_accuracy": target_val_accuracy,
}


#: The diagnostics each objective reads: a search's per-epoch interim record computes these
#: alone (``training.scoring.interim_record``); the validation metrics are always there.
DIAGNOSTICS_READ: dict[str, tuple[str, ...]] = {
    "source_val_accuracy": (),
    "source_val_acc_minus_mmd": ("feature_mmd_val",),
    "neg_target_entropy": ("target_val_entropy",),
    "neg_source_val_loss": ("source_val_loss",),
    "neg_feature_mmd": ("feature_mmd_val",),
    "im": ("target_val_im",),
    "snd": ("target_val_snd",),
    "bnm": ("target_val_bnm",),
    "neg_dev_risk": ("dev_risk",),
    "target_val_accuracy": (),
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
