"""``TrainConfig``: the frozen, validated set of hyperparameters of one training run.

Hyperparameters reach training only through this dataclass; a misspelled key, an ill-typed or
out-of-range value fails at once with a message naming the key.

Typical use::

    cfg = default_config("mmd", "deepmerge")                # paper-like baseline
    cfg = cfg.replace(lr=3e-4, lambda_tl=0.5)                # validated copy
    cfg = TrainConfig.from_dict(search_params)               # DeepHyper's dict
    cfg = TrainConfig.from_strings(parse_set_args(["lr=1e-3", "method=dann"]))  # CLI --set
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
from typing import Any, ClassVar

from models.backbones import backbone_names
from training.losses import transfer_loss_names
from training.mmd import BANDWIDTH_MODES, BASES, ESTIMATORS

__all__ = ["ConfigError", "TrainConfig", "default_config", "parse_set_args"]


class ConfigError(ValueError):
    """An invalid hyperparameter (unknown key, wrong type or out of range)."""


def _choice(*valid: str):
    return lambda v: v in valid, f"one of {', '.join(valid)}"


_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one run. The defaults are the ``none × deepmerge`` baseline.

    Attributes:
        backbone: registered backbone name (``deepmerge`` | ``resnet18``).
        method: registered transfer loss (``none`` | ``mmd`` | ``dann``).
        lr: Adam learning rate = OneCycleLR ``max_lr`` (> 0).
        weight_decay: Adam (L2) weight decay (≥ 0).
        batch_size: source images per step; the target batch has the same size (int ≥ 2).
        epochs: maximum number of epochs (int ≥ 1).
        onecycle_pct_start: fraction of the steps spent increasing the lr (0 < x < 1).
        onecycle_div_factor: initial lr = lr / div_factor (> 0).
        onecycle_final_div_factor: final lr = initial lr / final_div_factor (> 0).
        lambda_tl: weight λ_TL of the transfer loss in ``L_CL + λ_TL · L_TL`` (≥ 0).
        patience: early-stopping patience in epochs without improvement (int ≥ 1).
        seed: random seed (int ≥ 0).
        mmd_bandwidths: ``family`` (σ_k = base · mul^k) or ``authors`` (19 fixed σ²).
        mmd_base: ``median`` or ``mean`` pairwise distance as the family's base.
        mmd_mul: ratio between consecutive σ of the family (> 1).
        mmd_num: number of σ of the family (int ≥ 1).
        mmd_estimator: ``unbiased`` (Eq. 3, U-statistic) or ``biased`` (V-statistic).
        grl_schedule: ``ganin`` (λ(p) = grl_coeff · (2/(1+e^{-γp}) - 1)) or ``constant``.
        grl_coeff: gradient-reversal coefficient (its maximum under ``ganin``) (≥ 0).
        grl_gamma: γ of the Ganin schedule (> 0).
        dc_lr_mult: domain-classifier lr = lr · dc_lr_mult (> 0; the authors use 10).
        bottleneck_dim: ResNet18 bottleneck width (int ≥ 1; unused by ``deepmerge``).
        max_batches_per_epoch: cap on steps per epoch, 0 = a full pass over the source.
        device: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    """

    backbone: str = "deepmerge"
    method: str = "none"
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_size: int = 128
    epochs: int = 40
    onecycle_pct_start: float = 0.3
    onecycle_div_factor: float = 25.0
    onecycle_final_div_factor: float = 1e4
    lambda_tl: float = 1.0
    patience: int = 5
    seed: int = 1
    mmd_bandwidths: str = "family"
    mmd_base: str = "median"
    mmd_mul: float = 2.0
    mmd_num: int = 5
    mmd_estimator: str = "unbiased"
    grl_schedule: str = "ganin"
    grl_coeff: float = 1.0
    grl_gamma: float = 10.0
    dc_lr_mult: float = 10.0
    bottleneck_dim: int = 256
    max_batches_per_epoch: int = 0
    device: str = "auto"

    # key -> (predicate, description of the valid range); registries are read lazily.
    _CHECKS: ClassVar[dict[str, tuple[Any, str]]] = {
        "lr": (lambda v: v > 0, "> 0"),
        "weight_decay": (lambda v: v >= 0, ">= 0"),
        "batch_size": (lambda v: v >= 2, ">= 2"),
        "epochs": (lambda v: v >= 1, ">= 1"),
        "onecycle_pct_start": (lambda v: 0 < v < 1, "in (0, 1)"),
        "onecycle_div_factor": (lambda v: v > 0, "> 0"),
        "onecycle_final_div_factor": (lambda v: v > 0, "> 0"),
        "lambda_tl": (lambda v: v >= 0, ">= 0"),
        "patience": (lambda v: v >= 1, ">= 1"),
        "seed": (lambda v: v >= 0, ">= 0"),
        "mmd_bandwidths": _choice(*BANDWIDTH_MODES),
        "mmd_base": _choice(*BASES),
        "mmd_mul": (lambda v: v > 1, "> 1"),
        "mmd_num": (lambda v: v >= 1, ">= 1"),
        "mmd_estimator": _choice(*ESTIMATORS),
        "grl_schedule": _choice("ganin", "constant"),
        "grl_coeff": (lambda v: v >= 0, ">= 0"),
        "grl_gamma": (lambda v: v > 0, "> 0"),
        "dc_lr_mult": (lambda v: v > 0, "> 0"),
        "bottleneck_dim": (lambda v: v >= 1, ">= 1"),
        "max_batches_per_epoch": (lambda v: v >= 0, ">= 0 (0 = all)"),
        "device": (lambda v: bool(_DEVICE_RE.match(v)), "auto, cpu, mps, cuda or cuda:N"),
    }

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = _coerce(f.name, f.type, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        checks = {
            "backbone": (lambda v: v in backbone_names(), f"one of {', '.join(backbone_names())}"),
            "method": (
                lambda v: v in transfer_loss_names(),
                f"one of {', '.join(transfer_loss_names())}",
            ),
            **self._CHECKS,
        }
        for key, (ok, valid) in checks.items():
            value = getattr(self, key)
            if not ok(value):
                raise ConfigError(f"invalid value for {key!r}: {value!r}; must be {valid}")

    @classmethod
    def keys(cls) -> list[str]:
        """The field names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict; missing keys come from ``default_config(method, backbone)``.

        Args:
            d: hyperparameters (numpy scalars are accepted and turned into Python types).

        Raises:
            ConfigError: an unknown key (with a suggestion), an ill-typed or out-of-range value.
        """
        _check_keys(d)
        base = default_config(
            str(d.get("method", cls.method)), str(d.get("backbone", cls.backbone))
        )
        return dataclasses.replace(base, **d)

    @classmethod
    def from_strings(cls, d: dict[str, str]) -> TrainConfig:
        """Like :meth:`from_dict` but values are strings (CLI ``--set key=value``), cast by type."""
        _check_keys(d)
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        return cls.from_dict({k: _from_string(k, types[k], v) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-serialisable)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes`` applied (unknown keys are rejected)."""
        _check_keys(changes)
        return dataclasses.replace(self, **changes)


def _check_keys(d: dict[str, Any]) -> None:
    valid = TrainConfig.keys()
    for key in d:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown hyperparameter {key!r}{hint}; valid keys: {', '.join(valid)}"
            )


def _coerce(key: str, typ: str, value: Any) -> Any:
    """Check ``value`` against the field type (``str``/``int``/``float``); return a Python value."""
    if typ == "str" and isinstance(value, str):
        return str(value)
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if typ == "int" and is_number and float(value).is_integer():
        return int(value)
    if typ == "float" and is_number:
        return float(value)
    raise ConfigError(
        f"invalid type for {key!r}: expected {typ}, got {type(value).__name__} {value!r}"
    )


def _from_string(key: str, typ: str, text: str) -> Any:
    if not isinstance(text, str) or typ == "str":
        return text
    try:
        return int(text) if typ == "int" else float(text)
    except ValueError:
        raise ConfigError(f"invalid value for {key!r}: {text!r} is not a {typ}") from None


def parse_set_args(items: list[str]) -> dict[str, str]:
    """Turn CLI ``--set`` items ``["lr=1e-3", "method=mmd"]`` into ``{"lr": "1e-3", ...}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


# Per (method, backbone) overrides of the dataclass defaults; see docs in default_config.
_BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    "deepmerge": {"batch_size": 128, "epochs": 30, "lr": 1e-3},
    "resnet18": {"batch_size": 64, "epochs": 30, "lr": 1e-3, "bottleneck_dim": 256},
}
_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "none": {"lambda_tl": 0.0},
    "mmd": {"lambda_tl": 1.0},
    "dann": {"lambda_tl": 0.25, "patience": 10},
}


def default_config(method: str = "none", backbone: str = "deepmerge") -> TrainConfig:
    """Paper-like baseline for ``method × backbone`` (the starting point of each search).

    Common: Adam, OneCycleLR (pct_start 0.3, div 25, final_div 1e4), weight decay 1e-3,
    early-stopping patience 5, seed 1; MMD: family of 5 σ (×2 apart) around the median
    distance, unbiased; DANN: Ganin schedule (coeff 1, γ 10), domain classifier at 10× lr
    (the authors' ``lr_mult``).

    - ``deepmerge``: batch 128, 30 epochs (one cycle), lr 1e-3 (the authors' Adam lr).
    - ``resnet18``: batch 64, 30 epochs, lr 1e-3, bottleneck 256.
    - λ_TL: ``none`` 0, ``mmd`` 1.0, ``dann`` 0.25.
    - ``dann`` waits 10 epochs (not 5) before stopping early: its source validation loss is
      noisy (the adversarial game), and patience 5 stopped it before the one-cycle schedule
      had annealed the learning rate (``benchmarks/RESULTS.md``).

    Raises:
        ConfigError: unknown ``method`` or ``backbone`` (lists the valid names).
    """
    kw = {"method": method, "backbone": backbone}
    kw.update(_BACKBONE_DEFAULTS.get(backbone, {}))
    kw.update(_METHOD_DEFAULTS.get(method, {}))
    return TrainConfig(**kw)
