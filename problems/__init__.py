"""Search problems: one DeepHyper ``HpProblem`` per ``<method>_<backbone>``, from the specs.

Names: every registered method × every registered backbone (``none_deepmerge``,
``mmd_resnet``, …; ``resnet`` is the ``resnet18`` backbone's short name). The ranges and
defaults come from the method and backbone specs (:mod:`problems.spaces`), so a new method or
backbone gets its problems without a change here. Importing this package loads no network
library beyond torch (torchvision is imported only to build a ResNet18).

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

from models.registry import get_backbone
from problems.spaces import build_space
from training.config import TrainConfig, default_config
from training.naming import ProblemNameError, problem_names, split_problem_name
from training.registry import get_method

__all__ = ["Problem", "UnknownProblemError", "all_problems", "get_problem", "problem_names"]

#: An unknown problem name (a ``ValueError``; the message lists the valid ones).
UnknownProblemError = ProblemNameError


@dataclass(frozen=True)
class Problem:
    """A registered search problem.

    Attributes:
        name: ``<method>_<backbone>``, e.g. ``mmd_resnet``.
        method: transfer method (``none``, ``mmd``, ``dann``, …).
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


def get_problem(name: str) -> Problem:
    """The problem called ``name``, built from the current registries.

    Raises:
        UnknownProblemError: ``name`` is not registered (the message lists the valid names).
    """
    method, backbone = split_problem_name(name)
    space = build_space(get_method(method), get_backbone(backbone),
                        default_config(method, backbone))
    return Problem(name, method, backbone, space)


def all_problems() -> list[Problem]:
    """Every problem, by backbone then method."""
    return [get_problem(name) for name in problem_names()]
