"""Problem names ``<method>_<backbone>`` and the configuration each one starts from."""

from __future__ import annotations

from collections.abc import Iterable

from training.config import TrainConfig, default_config, parse_set_args

#: Backbone short names used in problem names -> backbone registry names.
PROBLEM_BACKBONES: dict[str, str] = {"deepmerge": "deepmerge", "resnet": "resnet18"}


class ProblemNameError(ValueError):
    """An unknown ``<method>_<backbone>`` name; the message lists the valid ones."""


def problem_names() -> list[str]:
    """Every ``<method>_<backbone>`` name, methods from the transfer-loss registry."""
    from training.losses import TRANSFER_LOSSES

    return [f"{m}_{b}" for b in PROBLEM_BACKBONES for m in TRANSFER_LOSSES]


def split_problem_name(name: str) -> tuple[str, str]:
    """``"mmd_resnet"`` -> ``("mmd", "resnet18")``; unknown names list the valid ones."""
    valid = problem_names()
    if name not in valid:
        raise ProblemNameError(f"unknown problem {name!r}; valid problems: {', '.join(valid)}")
    method, short = name.split("_", 1)
    return method, PROBLEM_BACKBONES[short]


def problem_config(name: str, overrides: Iterable[str] = ()) -> TrainConfig:
    """The default configuration of problem ``name`` with ``KEY=VALUE`` overrides applied."""
    method, backbone = split_problem_name(name)
    base = default_config(method, backbone)
    return TrainConfig.from_strings({**base.to_dict(), **parse_set_args(list(overrides))})
