"""Search problems: one DeepHyper ``HpProblem`` per ``<method>_<backbone>``.

Names: ``none_deepmerge``, ``mmd_deepmerge``, ``dann_deepmerge``, ``none_resnet``,
``mmd_resnet``, ``dann_resnet`` (``resnet`` is the ``resnet18`` backbone). The ranges live in
:mod:`problems.spaces`, one line per hyperparameter; every default (and every field that is
not searched) comes from ``training.config.default_config(method, backbone)``.

Example::

    from problems import get_problem
    problem = get_problem("mmd_resnet")
    problem.hp_problem.default_configuration   # == the baseline's searched fields
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from deephyper.hpo import HpProblem

from problems.spaces import build_space
from training.config import TrainConfig, default_config
from training.naming import problem_names, split_problem_name


class UnknownProblemError(KeyError):
    """A problem name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Problem:
    """A registered search problem.

    Attributes:
        name: ``<method>_<backbone>``, e.g. ``mmd_resnet``.
        method: transfer method (``none``, ``mmd``, ``dann``).
        backbone: the ``TrainConfig.backbone`` name (``deepmerge`` or ``resnet18``).
        hp_problem: the full search space, defaults = ``default_config(method, backbone)``.
    """

    name: str
    method: str
    backbone: str
    hp_problem: HpProblem

    @property
    def defaults(self) -> TrainConfig:
        """The baseline configuration (every ``TrainConfig`` field)."""
        return default_config(self.method, self.backbone)

    @property
    def hyperparameter_names(self) -> list[str]:
        """Names of the searched hyperparameters, in the space's order."""
        return list(self.hp_problem.hyperparameter_names)

    def subspace(self, fixed: Iterable[str] = ()) -> HpProblem:
        """A fresh ``HpProblem`` without the hyperparameters named in ``fixed``."""
        fixed = set(fixed)
        space = HpProblem()
        for name, hp in self.hp_problem.space.items():
            if name not in fixed:
                space.add_hyperparameter(hp)
        return space

    def describe(self) -> list[dict[str, Any]]:
        """One row per hyperparameter: name, kind, range/choices, default (for ``--list``)."""
        rows = []
        for name, hp in self.hp_problem.space.items():
            if hasattr(hp, "choices"):
                domain = list(hp.choices)
            elif hasattr(hp, "sequence"):
                domain = list(hp.sequence)
            else:
                domain = f"[{hp.lower}, {hp.upper}]" + (" log" if getattr(hp, "log", False) else "")
            rows.append({"name": name, "type": type(hp).__name__.replace("Hyperparameter", ""),
                         "range": domain, "default": hp.default_value})
        return rows


def _build(name: str) -> Problem:
    method, backbone = split_problem_name(name)
    return Problem(name, method, backbone, build_space(method, default_config(method, backbone)))


PROBLEM_NAMES = tuple(problem_names())  # <method>_<backbone>, from the two registries
PROBLEMS: dict[str, Problem] = {name: _build(name) for name in PROBLEM_NAMES}


def get_problem(name: str) -> Problem:
    """The registered problem called ``name``.

    Raises:
        UnknownProblemError: ``name`` is not registered (the message lists the valid names).
    """
    try:
        return PROBLEMS[name]
    except KeyError:
        valid = ", ".join(PROBLEM_NAMES)
        raise UnknownProblemError(f"unknown problem {name!r}; valid problems: {valid}") from None


__all__ = ["PROBLEMS", "PROBLEM_NAMES", "Problem", "UnknownProblemError", "get_problem"]
