"""The label-free diagnostics of a trial record, each declared once (one registry).

A :class:`DiagnosticSpec` names a value that :func:`training.scoring.score_splits` computes from
the validation splits without a single target label: its key, how to compute it, what it
reads, whether (and in which direction) it can serve as a search objective, one line of
description. Everything that lists the diagnostics derives from this registry:

- the keys of ``record["diagnostics"]`` (:func:`record_diagnostic_names`, the record's order)
  and what an epoch's interim record may compute (:func:`training.scoring.interim_record`);
- the diagnostic columns of the search table (:mod:`search.results`) and the ``m:`` columns
  of ``results.csv`` (:func:`search.runner.metadata_keys`), both in :func:`diagnostic_names`
  order;
- the objectives that read one diagnostic (:mod:`search.objectives`), hence the selection
  strategies of :mod:`search.selection`.

So a new validator is one ``register_diagnostic(DiagnosticSpec(...))`` (here for the built-in
ones, or in a module of ``$GALAXY_DA_PLUGINS``); tests register a throw-away one inside
``with registered_diagnostic(spec):``. The formulas of IM, SND, BNM and DEV are in
:mod:`training.validators`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.registry import Registry
from training.metrics import mean_entropy

if TYPE_CHECKING:  # the registry is read by tables and search problems without torch
    import torch

__all__ = [
    "COMPUTED_AFTER",
    "DIAGNOSTICS",
    "DIRECTIONS",
    "DiagnosticSpec",
    "ValidationOutputs",
    "diagnostic_names",
    "diagnostic_specs",
    "get_diagnostic",
    "record_diagnostic_names",
    "record_diagnostic_specs",
    "register_diagnostic",
    "registered_diagnostic",
    "unregister_diagnostic",
]

#: When a diagnostic is computed: once the source validation split is scored, once the
#: target's is, or once both are. The record lists its diagnostics in this order of groups.
COMPUTED_AFTER = ("source", "target", "both")
#: Which way a diagnostic that serves as an objective is better.
DIRECTIONS = ("higher", "lower")


@dataclass(frozen=True)
class ValidationOutputs:
    """What a label-free diagnostic may read: outputs of the validation splits, no target label.

    A field of a split that was not scored is ``None``; features are kept only when a wanted
    diagnostic ``needs_features``.

    Attributes:
        source_loss: mean cross-entropy of the labelled source validation split.
        source_losses: ``[n_s]`` its per-row cross-entropy (float64).
        source_features: ``[n_s, D]`` its features (CPU tensor).
        target_prob_merger: ``[n_t]`` predicted merger probability of the target validation rows.
        target_features: ``[n_t, D]`` their features (CPU tensor).
    """

    source_loss: float | None = None
    source_losses: np.ndarray | None = None
    source_features: torch.Tensor | None = None
    target_prob_merger: np.ndarray | None = None
    target_features: torch.Tensor | None = None


@dataclass(frozen=True)
class DiagnosticSpec:
    """One label-free diagnostic.

    Attributes:
        name: its key in ``record["diagnostics"]``, its column in the search table and its
            ``m:`` column in ``results.csv``.
        compute: ``compute(outputs: ValidationOutputs) -> float`` (NaN for degenerate inputs,
            never an exception).
        description: one line.
        needs_features: it reads the validation features (scoring keeps them only then).
        computed_after: ``"source"`` / ``"target"``: as soon as that validation split is scored
            (the source pass's mean loss, the target's mean entropy); ``"both"``: once both
            are (IM reads the target alone, yet is one of these). See :data:`COMPUTED_AFTER`.
        direction: ``"higher"`` or ``"lower"`` is better, for a diagnostic that serves as a
            search objective; ``None``: it does not.
        objective: the name of that objective in :mod:`search.objectives` (it maximises the
            value, or minus the value when lower is better); set exactly when ``direction`` is.
        order: position among the diagnostic columns of the search table and ``results.csv``
            (lower first).
    """

    name: str
    compute: Callable[[ValidationOutputs], float]
    description: str
    needs_features: bool = False
    computed_after: str = "both"
    direction: str | None = None
    objective: str | None = None
    order: int = 100

    @property
    def domains(self) -> tuple[str, ...]:
        """The validation splits that must be scored before it is computed."""
        return ("source", "target") if self.computed_after == "both" else (self.computed_after,)

    @property
    def needs_target(self) -> bool:
        """Whether it is computed only when the target validation split is scored."""
        return "target" in self.domains


def _check(spec: DiagnosticSpec) -> None:
    if spec.computed_after not in COMPUTED_AFTER:
        raise ValueError(f"diagnostic {spec.name!r}: computed_after must be one of "
                         f"{', '.join(COMPUTED_AFTER)}, got {spec.computed_after!r}")
    if spec.direction not in (None, *DIRECTIONS):
        raise ValueError(f"diagnostic {spec.name!r}: direction must be None or one of "
                         f"{', '.join(DIRECTIONS)}, got {spec.direction!r}")
    if (spec.direction is None) != (spec.objective is None):
        raise ValueError(f"diagnostic {spec.name!r}: an objective needs a direction and a "
                         "direction an objective name")


DIAGNOSTICS = Registry("diagnostic", None, check=_check)
register_diagnostic = DIAGNOSTICS.register  #: add a spec (its name must be new)
unregister_diagnostic = DIAGNOSTICS.unregister  #: remove a spec
registered_diagnostic = DIAGNOSTICS.registered  #: ``with registered_diagnostic(spec):`` (tests)
diagnostic_specs = DIAGNOSTICS.specs  #: every diagnostic, in the search table's column order
diagnostic_names = DIAGNOSTICS.names  #: their names, in that order
get_diagnostic = DIAGNOSTICS.get  #: the spec of a name (``UnknownNameError`` lists the valid)


def record_diagnostic_specs(names: Collection[str] | None = None) -> list[DiagnosticSpec]:
    """The diagnostics ``names`` (``None``: every one) in the record's order.

    The record's order: by :data:`COMPUTED_AFTER` (the order in which scoring meets them),
    then the column order.

    Raises:
        ValueError: a name that is not registered (the message lists the valid ones).
    """
    specs = sorted(diagnostic_specs(),
                   key=lambda spec: COMPUTED_AFTER.index(spec.computed_after))
    if names is None:
        return specs
    unknown = set(names) - {spec.name for spec in specs}
    if unknown:
        raise ValueError(f"unknown diagnostics {sorted(unknown)}; valid: "
                         f"{tuple(spec.name for spec in specs)}")
    return [spec for spec in specs if spec.name in names]


def record_diagnostic_names() -> list[str]:
    """The keys of ``record["diagnostics"]``, in the record's order."""
    return [spec.name for spec in record_diagnostic_specs()]


# --- the built-in diagnostics ---------------------------------------------------------------


def _source_val_loss(outputs: ValidationOutputs) -> float:
    return outputs.source_loss


def _target_val_entropy(outputs: ValidationOutputs) -> float:
    return mean_entropy(outputs.target_prob_merger)


# The formulas need torch; they are imported when a trial computes them, so reading the
# registry (tables, ``results.csv`` columns, objectives) stays torch-free.


def _feature_mmd_val(outputs: ValidationOutputs) -> float:
    from training import evaluate

    return evaluate.feature_mmd(outputs.source_features, outputs.target_features)


def _target_val_im(outputs: ValidationOutputs) -> float:
    from training import validators as v

    return v.information_maximization(v.class_probabilities(outputs.target_prob_merger))


def _target_val_snd(outputs: ValidationOutputs) -> float:
    from training import validators as v

    return v.soft_neighborhood_density(outputs.target_features)


def _target_val_bnm(outputs: ValidationOutputs) -> float:
    from training import validators as v

    return v.batch_nuclear_norm(v.class_probabilities(outputs.target_prob_merger))


def _dev_risk(outputs: ValidationOutputs) -> float:
    from training import validators as v

    return v.dev_risk(outputs.source_features, outputs.source_losses, outputs.target_features)


register_diagnostic(DiagnosticSpec(
    "source_val_loss", _source_val_loss, order=10, computed_after="source", direction="lower",
    objective="neg_source_val_loss",
    description="mean cross-entropy of the labelled source validation split (the stopping "
    "rule's signal)"))
register_diagnostic(DiagnosticSpec(
    "feature_mmd_val", _feature_mmd_val, order=20, needs_features=True, direction="lower",
    objective="neg_feature_mmd",
    description="MMD between the source and target validation features (one fixed estimator "
    "for every method, training.evaluate.feature_mmd)"))
register_diagnostic(DiagnosticSpec(
    "target_val_entropy", _target_val_entropy, order=30, computed_after="target",
    direction="lower", objective="neg_target_entropy",
    description="mean prediction entropy on the target validation split"))
register_diagnostic(DiagnosticSpec(
    "target_val_im", _target_val_im, order=40, direction="higher", objective="im",
    description="information maximisation of the target validation predictions (Gomes et al. "
    "2010; Shi & Sha 2012)"))
register_diagnostic(DiagnosticSpec(
    "target_val_snd", _target_val_snd, order=50, needs_features=True, direction="higher",
    objective="snd",
    description="soft neighbourhood density of the target validation features (Saito et al. "
    "2021)"))
register_diagnostic(DiagnosticSpec(
    "target_val_bnm", _target_val_bnm, order=60, direction="higher", objective="bnm",
    description="batch nuclear-norm of the target validation probabilities (Cui et al. 2020)"))
register_diagnostic(DiagnosticSpec(
    "dev_risk", _dev_risk, order=70, needs_features=True, direction="lower",
    objective="neg_dev_risk",
    description="deep embedded validation: the source validation loss importance-weighted "
    "towards the target by a domain classifier (You et al. 2019)"))
