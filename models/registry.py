"""Declarations shared by every spec: hyperparameters (``Hyper``) and backbones (``BackboneSpec``).

This module imports neither torch nor torchvision, so search problems can be built from the
specs without loading a network library.

A ``Hyper`` is one line: a hyperparameter's name, its default and the range the search
explores (DeepHyper 0.13's shortcuts: ``(low, high)``, ``(low, high, "log-uniform")``, or a list
of choices; ``None`` = not searched), plus, for a field that a spec introduces, its valid values
(``rule`` such as ``"> 0"``, ``">= 1"``, ``"in (0, 1)"``, or ``choices``). A spec that names a
field declared elsewhere (e.g. ``lambda_tl``) only overrides its default and range for that
method or backbone.

Backbones are registered with :func:`register_backbone` from their own module in
``models/backbones/`` (found automatically, one file per backbone); modules named in the
environment variable ``GALAXY_DA_PLUGINS`` (comma-separated) are imported too, so a user's own
methods and backbones also reach worker processes.
"""

from __future__ import annotations

import importlib
import math
import os
import pkgutil
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BACKBONES",
    "PLUGINS_ENV",
    "BackboneSpec",
    "Hyper",
    "Registry",
    "UnknownNameError",
    "backbone_names",
    "backbone_specs",
    "get_backbone",
    "import_package_modules",
    "load_plugins",
    "register_backbone",
    "unregister_backbone",
]

PLUGINS_ENV = "GALAXY_DA_PLUGINS"


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")

    def __str__(self) -> str:
        return str(self.args[0])


_RULE = re.compile(r"^\s*(>=|>|in)\s*(.+?)\s*$")


def _rule_predicate(rule: str) -> Callable[[Any], bool]:
    """``"> 0"``, ``">= 2"`` or ``"in (0, 1)"`` (open interval) -> a predicate."""
    match = _RULE.match(rule)
    if not match:
        raise ValueError(f"bad rule {rule!r}; use '> x', '>= x' or 'in (a, b)'")
    op, rest = match.groups()
    if op == "in":
        low, high = (float(x) for x in rest.strip("() ").split(","))
        return lambda v: low < v < high
    bound = float(rest)
    return (lambda v: v >= bound) if op == ">=" else (lambda v: v > bound)


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter on one line: name, default, searched range, valid values.

    Attributes:
        name: the ``TrainConfig`` field.
        default: its default (its Python type is the field's type: int, float or str).
        search: DeepHyper range shortcut, or ``None`` when the search leaves it fixed.
        rule: valid numbers (``"> 0"``, ``">= 1"``, ``"in (0, 1)"``); ``""`` = any.
        choices: valid values (strings of a categorical field, or e.g. ``(0, 1)`` of a switch).
        doc: one line for ``--list`` and the docs.
    """

    name: str
    default: Any
    search: Any = None
    rule: str = ""
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    @property
    def type_name(self) -> str:
        """``"int"``, ``"float"`` or ``"str"`` (from the default)."""
        return type(self.default).__name__

    @property
    def valid_text(self) -> str:
        """The valid values in words."""
        if self.choices is not None:
            return f"one of {', '.join(map(str, self.choices))}"
        return f"finite and {self.rule}" if self.rule else "any finite value"

    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` (already of the right type) is allowed; numbers must be finite."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return _rule_predicate(self.rule)(value) if self.rule else True


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the project knows about one backbone.

    Attributes:
        name: the ``TrainConfig.backbone`` value (``deepmerge``, ``resnet18``).
        problem_name: its short name in problem names (``mmd_resnet``).
        label: name in tables and figures.
        build: ``build(config) -> Backbone`` (an ``nn.Module`` with ``features(x)`` and
            ``feature_dim``).
        build_head: ``build_head(feature_dim, config) -> models.heads.ClassifierHead``.
        feature_dim: size of the backbone's features (the head may map them to another size).
        hyperparameters: its defaults (e.g. ``batch_size`` with the batch sizes searched) and
            the fields it introduces (e.g. ``bottleneck_dim``).
        order: position in tables (lower first).
        fp32_channels_last: NHWC pays for this backbone in fp32 on a CPU (measured; read by
            ``precision=auto`` on CPUs without bf16 units, :mod:`training.compute_path`).
    """

    name: str
    problem_name: str
    label: str
    build: Callable[[Any], Any]
    build_head: Callable[[int, Any], Any]
    feature_dim: int
    hyperparameters: tuple[Hyper, ...] = ()
    order: int = 100
    fp32_channels_last: bool = False

    @property
    def defaults(self) -> dict[str, Any]:
        """``{name: default}`` of its hyperparameters."""
        return {h.name: h.default for h in self.hyperparameters}


def import_package_modules(package: str) -> None:
    """Import every module of ``package`` (each registers its spec)."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def load_plugins() -> None:
    """Import the modules named in ``$GALAXY_DA_PLUGINS`` (comma-separated)."""
    for name in filter(None, (p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(","))):
        importlib.import_module(name)


class Registry:
    """The specs of one axis (backbones, methods, label-free diagnostics) by name, in table order.

    On first use it imports every module of ``package`` and every module named in ``modules``
    (each registers its spec) and the plugin modules of ``$GALAXY_DA_PLUGINS``.

    Args:
        kind: what a spec is, for messages (``"backbone"``).
        package: the package holding one module per spec (``None``: the specs are registered
            where the registry is made, or by ``modules``).
        aliases: the names a spec answers to (default: its ``name``).
        check: called with each spec before it is registered (raises ``ValueError``).
        modules: modules that register specs of this registry, outside ``package``.
        rivals: registries whose specs share the arms of tables and figures with this one's
            (the baselines and the methods): a name, label or colour one of them holds is
            refused here, and the other way round (each registry checks the specs registered
            in the other at that moment, so a clash raises whichever comes second).
    """

    def __init__(self, kind: str, package: str | None,
                 aliases: Callable[[Any], tuple[str, ...]] = lambda spec: (spec.name,),
                 check: Callable[[Any], None] = lambda spec: None,
                 modules: tuple[str, ...] = (), rivals: tuple[Registry, ...] = ()):
        self.kind, self.package, self.aliases, self.check = kind, package, aliases, check
        self.modules = modules
        self.rivals = list(rivals)
        for rival in rivals:
            rival.rivals.append(self)
        self._specs: dict[str, Any] = {}
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            if self.package is not None:
                import_package_modules(self.package)
            for module in self.modules:
                importlib.import_module(module)
            load_plugins()

    def register(self, spec: Any) -> Any:
        """Add ``spec``; its names, and its label and colour where it has them, must be new.

        New among this registry's specs and its ``rivals``' (the ones registered so far).
        """
        self.check(spec)
        held = [(self, other) for other in self._specs.values()]
        held += [(rival, other) for rival in self.rivals for other in rival._specs.values()]
        for registry, other in held:
            clash = sorted(set(self.aliases(spec)) & set(registry.aliases(other)))
            if clash:
                where = "" if registry is self else f" as a {registry.kind}"
                raise ValueError(f"{self.kind} {', '.join(map(repr, clash))} is already "
                                 f"registered{where}")
        for attribute in ("label", "color"):  # what tells arms apart in tables and figures
            value = str(getattr(spec, attribute, "") or "").strip().lower()
            owner = next(((registry, other) for registry, other in held if value and value ==
                          str(getattr(other, attribute, "") or "").strip().lower()), None)
            if owner is not None:
                registry, other = owner
                whose = (repr(other.name) if registry is self
                         else f"the {registry.kind} {other.name!r}")
                raise ValueError(f"{self.kind} {spec.name!r}: {attribute} "
                                 f"{getattr(spec, attribute)!r} is already {whose}'s; tables "
                                 f"and figures tell {self.kind}s apart by it. Fix: choose another")
        self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Remove a spec (for tests that register a toy one)."""
        self._specs.pop(name, None)

    @contextmanager
    def registered(self, spec: Any) -> Iterator[Any]:
        """``with registry.registered(spec):`` the spec is registered inside the block only."""
        self.register(spec)
        try:
            yield spec
        finally:
            self.unregister(spec.name)

    def specs(self) -> list[Any]:
        """Every registered spec, in table order (``order``, then name)."""
        self._load()
        return sorted(self._specs.values(), key=lambda s: (s.order, s.name))

    def names(self) -> list[str]:
        """Names of the registered specs, in table order."""
        return [s.name for s in self.specs()]

    def get(self, name: str) -> Any:
        """The spec answering to ``name``.

        Raises:
            UnknownNameError: not registered (lists the valid names).
        """
        self._load()
        for spec in self._specs.values():
            if name in self.aliases(spec):
                return spec
        raise UnknownNameError(self.kind, name, self.names())


BACKBONES = Registry("backbone", "models.backbones",
                     aliases=lambda spec: (spec.name, spec.problem_name))


register_backbone = BACKBONES.register  #: add a spec (its name and problem name must be new)
unregister_backbone = BACKBONES.unregister  #: remove a spec (tests of a toy backbone)
backbone_specs = BACKBONES.specs  #: every registered backbone, in table order
backbone_names = BACKBONES.names  #: their names, in table order
get_backbone = BACKBONES.get  #: the spec answering to a name or a problem short name
