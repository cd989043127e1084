"""Problem names ``<method>_<backbone>`` from the two spec registries, and their configurations.

``<backbone>`` is the backbone spec's short ``problem_name`` (``resnet`` for ``resnet18``).
"""

from __future__ import annotations

from collections.abc import Iterable

from models.registry import backbone_specs, get_backbone
from training.config import ConfigError, TrainConfig, parse_set_args
from training.registry import get_method, method_specs

#: Fields that ``--problem`` chooses; ``--set`` may not change them.
CHOSEN_BY_PROBLEM = ("method", "backbone")


class ProblemNameError(ValueError):
    """An unknown ``<method>_<backbone>`` name; the message lists the valid ones."""


def problem_name(method: str, backbone: str) -> str:
    """``("mmd", "resnet18")`` -> ``"mmd_resnet"``."""
    return f"{get_method(method).name}_{get_backbone(backbone).problem_name}"


def problem_names() -> list[str]:
    """Every ``<method>_<backbone>`` name, by backbone then method (table order)."""
    return [f"{m.name}_{b.problem_name}" for b in backbone_specs() for m in method_specs()]


def split_problem_name(name: str) -> tuple[str, str]:
    """``"mmd_resnet"`` -> ``("mmd", "resnet18")``; unknown names list the valid ones."""
    valid = problem_names()
    if name not in valid:
        raise ProblemNameError(f"unknown problem {name!r}; valid problems: {', '.join(valid)}")
    method, short = name.split("_", 1)
    return method, get_backbone(short).name


def problem_config(name: str, overrides: Iterable[str] = (),
                   not_settable: Iterable[str] = CHOSEN_BY_PROBLEM) -> TrainConfig:
    """The default configuration of problem ``name`` with ``KEY=VALUE`` overrides applied.

    Raises:
        ProblemNameError: unknown problem.
        ConfigError: a malformed item, an unknown key, a value out of range, or a key in
            ``not_settable`` (``method`` and ``backbone`` are chosen by the problem).
    """
    method, backbone = split_problem_name(name)
    sets = parse_set_args(list(overrides))
    for key in sets:
        if key in not_settable:
            raise ConfigError(f"--set {key}=...: {key} is chosen by --problem ({name}); pick "
                              f"another problem instead (see --list)")
    return TrainConfig.from_strings({**sets, "method": method, "backbone": backbone})
