"""``TrainConfig``: the frozen, validated set of hyperparameters of one training run.

Hyperparameters reach training only through this object; a misspelled key, an ill-typed or
out-of-range value fails at once with a message naming the key. Its fields are the common ones
below (:data:`COMMON`) plus those the registered method and backbone specs introduce (e.g.
``mmd_mul`` from ``training/methods/mmd.py``, ``bottleneck_dim`` from
``models/backbones/resnet.py``), so a new method brings its own fields in its own file.

Defaults of ``method × backbone``: the common default, overridden by the backbone spec's, then
by the method spec's (:func:`default_config`).

Typical use::

    cfg = default_config("mmd", "deepmerge")                # paper-like baseline
    cfg = cfg.replace(lr=3e-4, lambda_tl=0.5)                # validated copy
    cfg = TrainConfig.from_dict(search_params)               # DeepHyper's dict
    cfg = TrainConfig.from_strings(parse_set_args(["lr=1e-3", "epochs=5"]))  # CLI --set

This module imports no network library.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
from typing import Any

from models.registry import Hyper, backbone_names, backbone_specs, get_backbone
from training.registry import get_method, method_names, method_specs

__all__ = ["COMMON", "ConfigError", "TrainConfig", "config_fields", "default_config",
           "field_owners", "parse_set_args", "used_fields"]

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: Numerical precisions of the network (see ``training.loop``).
PRECISIONS = ("auto", "fp32", "bf16")
#: Stopping rules (see ``training.loop.fit``): the whole schedule is trained by all but
#: ``patience``; they differ in which epoch's weights the run returns. The default, ``best``,
#: was chosen on development data (benchmarks/stopping_study.py, issue 25): the same rule for
#: every method, and no run ends before its learning rate annealed.
STOPPING_RULES = ("best", "best_after_peak", "last", "patience")
#: Input normalisations (see ``galaxies.datasets.domain_stats``).
NORMALIZATIONS = ("source", "per_domain")

#: Fields of every run, one line each: name, default, searched range (None = fixed), valid.
COMMON: tuple[Hyper, ...] = (
    Hyper("backbone", "deepmerge", doc="registered backbone"),
    Hyper("method", "none", doc="registered method (transfer loss)"),
    Hyper("lr", 1e-3, (1e-5, 1e-2, "log-uniform"), "> 0",
          doc="Adam learning rate = OneCycleLR max_lr"),
    Hyper("weight_decay", 1e-3, (1e-6, 1e-2, "log-uniform"), ">= 0", doc="Adam (L2) weight decay"),
    Hyper("batch_size", 128, None, ">= 2",
          doc="source images per step (the target batch has the same size); searched over "
          "the backbone's batch sizes"),
    Hyper("stopping", "best", choices=STOPPING_RULES,
          doc="which epoch's weights a run returns (training.loop.fit): best = the whole "
          "schedule, lowest source validation loss; best_after_peak = the same among the "
          "epochs after the lr peak; last = the final (annealed) weights; patience = early "
          "stopping after `patience` epochs without improvement"),
    Hyper("patience", 5, None, ">= 1",
          doc="early-stopping patience (epochs), read by stopping=patience only"),
    Hyper("onecycle_pct_start", 0.3, (0.1, 0.5), "in (0, 1)",
          doc="fraction of the steps spent raising the lr"),
    Hyper("onecycle_div_factor", 25.0, (5.0, 100.0, "log-uniform"), "> 0",
          doc="initial lr = lr / div_factor"),
    Hyper("onecycle_final_div_factor", 1e4, (1e2, 1e5, "log-uniform"), "> 0",
          doc="final lr = initial lr / final_div_factor"),
    Hyper("epochs", 30, None, ">= 1", doc="maximum number of epochs"),
    Hyper("seed", 1, None, ">= 0", doc="random seed"),
    Hyper("max_batches_per_epoch", 0, None, ">= 0", doc="cap on steps per epoch, 0 = all"),
    Hyper("max_images_per_epoch", 0, None, ">= 0",
          doc="cap on source images per epoch whatever the batch size (steps = max(1, cap // "
          "batch_size)), 0 = all; a search's laptop budget sets it"),
    Hyper("device", "auto", doc="auto (CUDA if available, else CPU), cpu, cuda, cuda:N, mps"),
    Hyper("lambda_tl", 1.0, None, ">= 0", doc="weight of L_TL in L_CL + lambda_TL * L_TL"),
    Hyper("precision", "auto", choices=PRECISIONS,
          doc="auto = the fastest path of the device (training/compute_path.py), fp32, or "
          "bf16 autocast of the network (CPU oneDNN/AMX, CUDA); losses in fp32"),
    Hyper("channels_last", 0, None, choices=(0, 1),
          doc="1 = NHWC memory layout for the network and its input batches (auto may add "
          "it)"),
    Hyper("normalization", "source", choices=NORMALIZATIONS,
          doc="source = both domains standardised with the source-train channel statistics; "
          "per_domain = each domain with its own training split's (the authors' code)"),
    Hyper("compile", 0, None, choices=(0, 1),
          doc="1 = torch.compile the training forward/backward (fused kernels; costs a "
          "warm-up)"),
)


class ConfigError(ValueError):
    """An invalid hyperparameter (unknown key, wrong type or out of range)."""


def config_fields() -> dict[str, Hyper]:
    """Every field: the common ones, then those the method and backbone specs introduce."""
    fields = {h.name: h for h in COMMON}
    for spec in (*method_specs(), *backbone_specs()):
        for hyper in spec.hyperparameters:
            fields.setdefault(hyper.name, hyper)
    return fields


def used_fields(method: str, backbone: str) -> list[str]:
    """The fields a ``method × backbone`` run reads: the common ones, then its two specs' own.

    A field another method or backbone introduces (e.g. ``grl_coeff`` of ``dann`` for a
    ``none`` run) is carried in every config with its default but never read by this run.

    Raises:
        UnknownNameError: an unknown method or backbone.
    """
    names = [h.name for h in COMMON]
    for spec in (get_method(method), get_backbone(backbone)):
        names += [h.name for h in spec.hyperparameters if h.name not in names]
    return names


def field_owners(name: str) -> list[str]:
    """``["method dann"]``: the specs that declare field ``name`` (empty for a common field)."""
    return [f"{kind} {spec.name}"
            for kind, specs in (("method", method_specs()), ("backbone", backbone_specs()))
            for spec in specs if any(h.name == name for h in spec.hyperparameters)]


def _check(hyper: Hyper, value: Any) -> None:
    if hyper.name == "backbone":
        ok, valid = value in backbone_names(), f"one of {', '.join(backbone_names())}"
    elif hyper.name == "method":
        ok, valid = value in method_names(), f"one of {', '.join(method_names())}"
    elif hyper.name == "device":
        ok, valid = bool(_DEVICE_RE.match(value)), "auto, cpu, mps, cuda or cuda:N"
    else:
        ok, valid = hyper.is_valid(value), hyper.valid_text
    if not ok:
        raise ConfigError(f"invalid value for {hyper.name!r}: {value!r}; must be {valid}")


class TrainConfig:
    """Hyperparameters of one run: every field of :func:`config_fields`, read as attributes.

    Frozen (assigning raises ``dataclasses.FrozenInstanceError``), hashable, comparable. Build
    it with :func:`default_config`, :meth:`from_dict`, :meth:`from_strings` or
    ``TrainConfig(**values)`` (the same as ``from_dict``); missing fields take the defaults of
    its ``method × backbone``.
    """

    def __init__(self, **values: Any):
        _check_keys(values)
        fields = config_fields()
        method = _coerce(fields["method"], values.get("method", fields["method"].default))
        backbone = _coerce(fields["backbone"], values.get("backbone", fields["backbone"].default))
        merged = {**_defaults(method, backbone), **values}
        for name, hyper in fields.items():
            value = _coerce(hyper, merged[name])
            _check(hyper, value)
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        return "TrainConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"

    def __reduce__(self):
        return (_from_values, (self.to_dict(),))

    @classmethod
    def keys(cls) -> list[str]:
        """The field names, common ones first."""
        return list(config_fields())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict; missing keys come from ``default_config(method, backbone)``.

        Args:
            d: hyperparameters (numpy scalars are accepted and turned into Python types).

        Raises:
            ConfigError: an unknown key (with a suggestion), an ill-typed or out-of-range value.
        """
        return cls(**d)

    @classmethod
    def from_strings(cls, d: dict[str, str]) -> TrainConfig:
        """Like :meth:`from_dict` but values are strings (CLI ``--set key=value``), cast by type."""
        _check_keys(d)
        fields = config_fields()
        return cls.from_dict({k: _from_string(fields[k], v) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-serialisable)."""
        return {name: self.__dict__[name] for name in config_fields() if name in self.__dict__}

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes`` applied (unknown keys are rejected)."""
        _check_keys(changes)
        return TrainConfig(**{**self.to_dict(), **changes})


def _from_values(values: dict[str, Any]) -> TrainConfig:
    return TrainConfig(**values)


def _defaults(method: str, backbone: str) -> dict[str, Any]:
    values = {name: hyper.default for name, hyper in config_fields().items()}
    if backbone in backbone_names():
        values.update(get_backbone(backbone).defaults)
    if method in method_names():
        values.update(get_method(method).defaults)
    return {**values, "method": method, "backbone": backbone}


def _check_keys(d: dict[str, Any]) -> None:
    valid = list(config_fields())
    for key in d:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown hyperparameter {key!r}{hint}; valid keys: {', '.join(valid)}"
            )


def _coerce(hyper: Hyper, value: Any) -> Any:
    """Check ``value`` against the field type (``str``/``int``/``float``); return a Python value."""
    typ = hyper.type_name
    if typ == "str" and isinstance(value, str):
        return str(value)
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if typ == "int" and is_number and float(value).is_integer():
        return int(value)
    if typ == "float" and is_number:
        return float(value)
    raise ConfigError(
        f"invalid type for {hyper.name!r}: expected {typ}, got {type(value).__name__} {value!r}"
    )


def _from_string(hyper: Hyper, text: str) -> Any:
    typ = hyper.type_name
    if not isinstance(text, str) or typ == "str":
        return text
    try:
        return int(text) if typ == "int" else float(text)
    except ValueError:
        raise ConfigError(f"invalid value for {hyper.name!r}: {text!r} is not a {typ}") from None


def parse_set_args(items: list[str]) -> dict[str, str]:
    """Turn CLI ``--set`` items ``["lr=1e-3", "epochs=5"]`` into ``{"lr": "1e-3", ...}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def default_config(method: str = "none", backbone: str = "deepmerge") -> TrainConfig:
    """The baseline of ``method × backbone`` (the starting point of each search).

    Common (:data:`COMMON`): Adam, OneCycleLR (pct_start 0.3, div 25, final_div 1e4), weight
    decay 1e-3, 30 epochs, seed 1, stopping rule ``best`` (the whole schedule, the weights of
    the lowest source validation loss; ``stopping=patience`` restores early stopping with
    patience 5). The backbone spec sets the batch size and learning rate (``deepmerge``:
    batch 128, lr 1e-3, the authors' Adam lr; ``resnet18``: batch 64, lr 1e-3, bottleneck
    256); the method spec sets λ_TL (``none`` 0, ``mmd`` 1.0, ``dann`` 0.25) and its own
    fields (``dann``'s patience is 10 under ``stopping=patience``).

    Raises:
        ConfigError: unknown ``method`` or ``backbone`` (lists the valid names).
    """
    return TrainConfig(method=method, backbone=backbone)
