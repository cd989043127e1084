"""Method specs: everything the project knows about one domain-adaptation method, in one place.

A method is one module in ``training/methods/`` holding its transfer loss (an ``nn.Module``
``forward(f_s, f_t) -> Tensor``, see :class:`training.transfer.TransferLoss`) and a
:class:`MethodSpec` registered with :func:`register_method`. From the specs derive the
``TrainConfig`` fields and defaults, the search problems (``<method>_<backbone>``), the loop's
choice to draw target batches, and the rows, labels and colours of tables and figures.
Modules named in ``$GALAXY_DA_PLUGINS`` are imported too (see :mod:`models.registry`).

A baseline is a classifier the DA methods are measured against that is not trained by the
trial loop (the classical baseline, ``training/classical.py``): its own module writes trial
records and registers a :class:`BaselineSpec` with :func:`register_baseline`; tables and
figures read its label, colour, order and the backbone whose tables list it from the spec.
Methods and baselines are arms of the same tables, so one name, label or colour cannot belong to
both (the two registries are rivals, :class:`models.registry.Registry`).

This module imports no network library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models.registry import Hyper, Registry

__all__ = [
    "BASELINES",
    "BASELINE_MODULES",
    "METHODS",
    "BaselineSpec",
    "MethodSpec",
    "baseline_names",
    "baseline_specs",
    "create_transfer_loss",
    "get_baseline",
    "get_method",
    "method_names",
    "method_specs",
    "register_baseline",
    "register_method",
    "unregister_baseline",
    "unregister_method",
]


@dataclass(frozen=True)
class MethodSpec:
    """One domain-adaptation method.

    Attributes:
        name: the ``TrainConfig.method`` value and the first part of problem names.
        label: name in tables and figures (``"MMD"``).
        color: matplotlib colour in figures.
        build: ``build(config, feature_dim) -> TransferLoss``.
        needs_target: whether a training step draws a target batch (``False``: source only).
        hyperparameters: its defaults (e.g. ``lambda_tl``) with their searched ranges, and
            the fields it introduces (e.g. ``mmd_mul``), one :class:`~models.registry.Hyper`
            each; searched ones (``search`` set) join the common ones in its problems.
        order: position in tables (lower first).
        summary: one line for ``--list``.
        adapt_for_target: ``adapt_for_target(model, target_train_images, device) -> model``,
            or ``None``: the network that scores the *target* splits, made from the trained one
            and the unlabelled target *training* images (AdaBN re-estimates BatchNorm
            statistics); the source splits are always scored by the trained network.
        trains_on: the domain whose *labelled* training split the classifier learns from and
            whose validation loss the stopping rule reads: ``"source"`` for every method; only
            the oracles, upper bounds that no choice may read, say otherwise: ``"target"``
            (``training/methods/oracle.py``) or ``"both"``, the two labelled training splits
            pooled (``training/methods/oracleboth.py``).
    """

    name: str
    label: str
    color: str
    build: Callable[[Any, int], Any]
    needs_target: bool = True
    hyperparameters: tuple[Hyper, ...] = ()
    order: int = 100
    summary: str = ""
    adapt_for_target: Callable[[Any, Any, Any], Any] | None = None
    trains_on: str = "source"

    @property
    def defaults(self) -> dict[str, Any]:
        """``{name: default}`` of its hyperparameters."""
        return {h.name: h.default for h in self.hyperparameters}


#: What a method's classifier may learn from (:attr:`MethodSpec.trains_on`).
TRAINING_DOMAINS = ("source", "target", "both")


def _check_name(spec: MethodSpec) -> None:
    if "_" in spec.name or not spec.name:
        raise ValueError(f"method name {spec.name!r} must be non-empty without '_' (problem "
                         "names are <method>_<backbone>)")
    if spec.trains_on not in TRAINING_DOMAINS:
        raise ValueError(f"method {spec.name!r}: trains_on must be one of {TRAINING_DOMAINS}, "
                         f"got {spec.trains_on!r}")


METHODS = Registry("method", "training.methods", check=_check_name)
register_method = METHODS.register  #: add a spec (its name must be new, without ``_``)
unregister_method = METHODS.unregister  #: remove a spec (tests of a toy method)
method_specs = METHODS.specs  #: every registered method, in table order
method_names = METHODS.names  #: their names, in table order
get_method = METHODS.get  #: the spec of a method name (``UnknownNameError`` lists the valid)


@dataclass(frozen=True)
class BaselineSpec:
    """One baseline: a classifier outside the trial loop whose records join the tables.

    Attributes:
        name: its records' ``method`` and its arm's folder name (``classical``).
        problem: its records' ``problem`` (``classical_gbt``); not a search problem.
        label: its row label in tables.
        color: matplotlib colour in figures.
        module: the module that runs it (``python -m <module>``), writing the trial files
            (``record.json``, ``roc.json``, ``predictions.npz``) of ``docs/CONTRACTS.md``.
        joins: the registered backbone whose tables list its records (it has no network of
            theirs: the classical baseline joins ``deepmerge``, the paper's backbone).
        order: position among the arms, before every method (lower first).
        summary: one line for listings.
    """

    name: str
    problem: str
    label: str
    color: str
    module: str
    joins: str = "deepmerge"
    order: int = 0
    summary: str = ""


def _check_baseline(spec: BaselineSpec) -> None:
    if not spec.name or "_" in spec.name or "-" in spec.name:
        raise ValueError(f"baseline name {spec.name!r} must be non-empty without '_' or '-' "
                         "(it names an arm folder)")


#: The modules that register a baseline, one line each (a user's own: ``$GALAXY_DA_PLUGINS``).
BASELINE_MODULES = (
    "training.classical",
)
BASELINES = Registry("baseline", None, check=_check_baseline, modules=BASELINE_MODULES,
                     rivals=(METHODS,))
register_baseline = BASELINES.register  #: add a spec (name, label and colour new to methods too)
unregister_baseline = BASELINES.unregister  #: remove a spec (tests of a throw-away baseline)
baseline_specs = BASELINES.specs  #: every registered baseline, in table order
baseline_names = BASELINES.names  #: their names, in table order
get_baseline = BASELINES.get  #: the spec of a baseline name (``UnknownNameError`` lists the valid)


def create_transfer_loss(config: Any, feature_dim: int) -> Any:
    """The transfer loss of ``config.method`` for features of size ``feature_dim``.

    Raises:
        UnknownNameError: ``config.method`` is not registered (lists the valid names).
    """
    return get_method(config.method).build(config, feature_dim)
