"""Problem names ``<method>_<backbone>`` from the two spec registries, and their configurations.

``<backbone>`` is the backbone spec's short ``problem_name`` (``resnet`` for ``resnet18``).
"""

from __future__ import annotations

from collections.abc import Iterable

from models.registry import backbone_specs, get_backbone
from training.config import (
    ConfigError,
    TrainConfig,
    config_fields,
    field_owners,
    parse_set_args,
    used_fields,
)
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
        ConfigError: a malformed item, an unknown key, a value out of range, a key in
            ``not_settable`` (``method`` and ``backbone`` are chosen by the problem), or a key
            the problem does not use (a field of another method or backbone, e.g.
            ``grl_coeff`` of ``dann`` on ``none_deepmerge``: :func:`unused_key_error`).
    """
    method, backbone = split_problem_name(name)
    sets = parse_set_args(list(overrides))
    for key in sets:
        if key in not_settable:
            raise ConfigError(f"--set {key}=...: {key} is chosen by --problem ({name}); pick "
                              f"another problem instead (see --list)")
    used = used_fields(method, backbone)
    for key in sets:
        if key in config_fields() and key not in used:  # unknown keys: from_strings' message
            raise unused_key_error(name, key, [k for k in used if k not in not_settable])
    return TrainConfig.from_strings({**sets, "method": method, "backbone": backbone})


def unused_key_error(problem: str, key: str, keys: Iterable[str]) -> ConfigError:
    """The error for ``--set key=...`` on a problem that never reads ``key``."""
    owners = ", ".join(field_owners(key)) or "another spec"
    return ConfigError(f"--set {key}=...: problem {problem} does not use {key} (a field of "
                       f"{owners}); its keys: {', '.join(keys)}")
