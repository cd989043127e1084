"""Objectives: a trial record -> one number that the search MAXIMISES.

Registry (:func:`objectives`, also the live mapping ``OBJECTIVES``; unknown name -> error
listing the valid ones):

- ``source_val_accuracy``: accuracy on the labelled source validation split. Ignores the
  target entirely.
- ``source_val_acc_minus_mmd`` (default, label-free): source validation accuracy minus
  ``beta * feature_mmd_val``, the MMD between source and target validation features of the
  trained model (``record["diagnostics"]["feature_mmd_val"]``). Rewards a classifier whose
  features are also domain-invariant.
- one objective per label-free diagnostic with a direction (:mod:`training.label_free`, where
  each one's name, direction and description are declared): the diagnostic, or minus it when
  lower is better. The built-in ones: ``neg_target_entropy`` (``target_val_entropy``),
  ``neg_source_val_loss`` (``source_val_loss``, the stopping signal), ``neg_feature_mmd``
  (``feature_mmd_val`` alone), ``im`` (``target_val_im``), ``snd`` (``target_val_snd``),
  ``bnm`` (``target_val_bnm``) and ``neg_dev_risk`` (``dev_risk``).
- ``target_val_accuracy``: ORACLE. Needs target labels, which a real domain-adaptation setting
  does not have; use it only as an opt-in upper bound for comparison, never as the default.

The validators' formulas, subsampling and degenerate cases are documented in
:mod:`training.validators`; a value that is missing (e.g. a classical-baseline record) or
not finite makes :func:`objective_value` return ``None`` (the trial cannot be selected).
Which label-free objective ranks trials best by target test accuracy is measured with
:mod:`search.selection_study` on a finished search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from training.label_free import DiagnosticSpec, diagnostic_specs

DEFAULT_OBJECTIVE = "source_val_acc_minus_mmd"
MMD_BETA = 1.0  # weight of the feature MMD in ``source_val_acc_minus_mmd``
ORACLES = frozenset({"target_val_accuracy"})
#: Listed first (the ``--objective`` choices, the selection strategies, the rows of the
#: objective study), in the order the first searches offered them; the other objectives of
#: diagnostics follow in the registry's order, the oracle last.
LISTED_FIRST = ("source_val_accuracy", "source_val_acc_minus_mmd", "neg_target_entropy")

Objective = Callable[[dict[str, Any]], float]


def _accuracy(record: dict[str, Any], split: str) -> float:
    return float(record["metrics"][split]["accuracy"])


def source_val_accuracy(record: dict[str, Any]) -> float:
    """Source validation accuracy."""
    return _accuracy(record, "source_val")


def source_val_acc_minus_mmd(record: dict[str, Any], beta: float = MMD_BETA) -> float:
    """Source validation accuracy minus ``beta`` times the source/target feature MMD."""
    return _accuracy(record, "source_val") - beta * float(record["diagnostics"]["feature_mmd_val"])


def target_val_accuracy(record: dict[str, Any]) -> float:
    """ORACLE: target validation accuracy (uses target labels; opt-in comparison only)."""
    return _accuracy(record, "target_val")


def diagnostic_objective(spec: DiagnosticSpec) -> Objective:
    """The objective of one diagnostic: its value, or minus its value when lower is better."""
    key, higher = spec.name, spec.direction == "higher"

    def objective(record: dict[str, Any]) -> float:
        value = float(record["diagnostics"][key])
        return value if higher else -value

    objective.__name__ = spec.objective
    objective.__doc__ = f"{'' if higher else 'Minus: '}{spec.description} (``{key}``)."
    return objective


#: Objectives of their own: name -> (function, the diagnostics it reads). The validation
#: metrics are always in a record; a search's per-epoch interim record computes only the
#: diagnostics its objective reads (``training.scoring.interim_record``).
_OWN: dict[str, tuple[Objective, tuple[str, ...]]] = {
    "source_val_accuracy": (source_val_accuracy, ()),
    "source_val_acc_minus_mmd": (source_val_acc_minus_mmd, ("feature_mmd_val",)),
    "target_val_accuracy": (target_val_accuracy, ()),
}


def _registry() -> dict[str, tuple[Objective, tuple[str, ...]]]:
    """Every objective with the diagnostics it reads, in the listing order (see above)."""
    found = dict(_OWN)
    for spec in diagnostic_specs():
        if spec.objective is None:
            continue
        if spec.objective in found:
            raise ValueError(f"diagnostic {spec.name!r}: objective {spec.objective!r} is "
                             "already taken. Fix: choose another name")
        found[spec.objective] = (diagnostic_objective(spec), (spec.name,))
    first = [name for name in LISTED_FIRST if name in found]
    rest = [name for name in found if name not in first and name not in ORACLES]
    return {name: found[name] for name in (*first, *rest, *sorted(ORACLES & found.keys()))}


def objectives() -> dict[str, Objective]:
    """``{name: objective}`` of every objective, the registered diagnostics' included."""
    return {name: function for name, (function, _) in _registry().items()}


def diagnostics_read(name: str) -> tuple[str, ...]:
    """The diagnostics objective ``name`` reads (a stopper's interim record computes these).

    Raises:
        KeyError: unknown name (the message lists the valid ones).
    """
    get_objective(name)
    return _registry()[name][1]


class LiveMapping(Mapping[str, Any]):
    """A read-only mapping that asks ``build()`` again on every use (follows the registry)."""

    def __init__(self, build: Callable[[], dict[str, Any]]):
        self._build = build

    def __getitem__(self, name: str) -> Any:
        return self._build()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(self._build())


#: ``objectives()`` as a mapping that follows the registry (a diagnostic registered later,
#: e.g. by a test, is in it).
OBJECTIVES: Mapping[str, Objective] = LiveMapping(objectives)
#: The diagnostics each objective reads (``diagnostics_read``), as a live mapping.
DIAGNOSTICS_READ: Mapping[str, tuple[str, ...]] = LiveMapping(
    lambda: {name: read for name, (_, read) in _registry().items()})


def get_objective(name: str) -> Objective:
    """The objective function called ``name``.

    Raises:
        KeyError: unknown name (the message lists the valid ones).
    """
    found = objectives()
    if name not in found:
        raise KeyError(f"unknown objective {name!r}; valid objectives: {', '.join(found)}")
    return found[name]


def objective_value(name: str, record: dict[str, Any]) -> float | None:
    """``name`` computed from an ``ok`` record; ``None`` if missing or not finite."""
    if record.get("status") != "ok":
        return None
    function = objectives().get(name)  # a clash in the registry raises here, loudly
    if function is None:
        return None
    try:
        value = function(record)
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
