"""Transfer losses ``L_TL`` by name: ``none``, ``mmd``, ``dann``.

Every transfer loss is an ``nn.Module`` with ``forward(f_s, f_t) -> Tensor`` (scalar) and knows
nothing of the backbone; the one training step is ``loss = L_CL + λ_TL · L_TL`` for every
method. The loop also calls, for any method:

- ``set_progress(p)`` each step with the training progress ``p ∈ [0, 1]`` (no-op unless the
  loss has a schedule);
- ``parameter_groups(base_lr, dc_lr_mult)`` once, to add the loss's own trainable parameters
  to the optimizer (``[]`` for ``none``/``mmd``; the domain classifier at
  ``lr = base_lr · dc_lr_mult`` for ``dann``). Each group carries an ``"lr"`` key, so
  ``OneCycleLR(max_lr=[g["lr"] for g in optimizer.param_groups])`` keeps the ratio.

This module must not import :mod:`training.config` (the config imports the registry).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from models.backbones import UnknownNameError
from models.grl import grad_reverse
from models.heads import DomainClassifier
from training.mmd import MultiKernelMMD

if TYPE_CHECKING:
    from training.config import TrainConfig

__all__ = [
    "TRANSFER_LOSSES",
    "DomainAdversarialLoss",
    "MMDLoss",
    "NoTransferLoss",
    "TransferLoss",
    "create_transfer_loss",
    "ganin_coeff",
    "register_transfer_loss",
    "transfer_loss_names",
]


class TransferLoss(nn.Module):
    """Base class of the transfer losses (see the module docstring for the loop's protocol)."""

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """Scalar loss from source features ``[m, d]`` and target features ``[n, d]``."""
        raise NotImplementedError

    def set_progress(self, p: float) -> None:
        """Tell the loss the training progress ``p ∈ [0, 1]`` (default: ignored)."""

    def parameter_groups(self, base_lr: float, dc_lr_mult: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups for the loss's own parameters (default: none)."""
        return []


Builder = Callable[["TrainConfig", int], TransferLoss]
TRANSFER_LOSSES: dict[str, Builder] = {}


def register_transfer_loss(name: str) -> Callable[[Builder], Builder]:
    """Register a builder ``(config, feature_dim) -> TransferLoss`` under ``name``."""

    def decorator(builder: Builder) -> Builder:
        if name in TRANSFER_LOSSES:
            raise ValueError(f"transfer loss {name!r} is already registered")
        TRANSFER_LOSSES[name] = builder
        return builder

    return decorator


def transfer_loss_names() -> list[str]:
    """Names of the registered transfer losses (= methods), sorted."""
    return sorted(TRANSFER_LOSSES)


def create_transfer_loss(config: TrainConfig, feature_dim: int) -> TransferLoss:
    """Build the transfer loss named by ``config.method``.

    Args:
        config: a ``TrainConfig`` (only the fields of the chosen method are read).
        feature_dim: size of the features the loss sees (``Classifier.transfer_dim``).

    Raises:
        UnknownNameError: ``config.method`` is not registered (lists the valid names).
    """
    if config.method not in TRANSFER_LOSSES:
        raise UnknownNameError("method", config.method, transfer_loss_names())
    return TRANSFER_LOSSES[config.method](config, feature_dim)


class NoTransferLoss(TransferLoss):
    """No domain adaptation: ``L_TL = 0`` (a zero scalar on ``f_s``'s device and dtype)."""

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """Return ``0``."""
        return f_s.new_zeros(())


class MMDLoss(TransferLoss):
    """MMD transfer loss: multi-kernel Gaussian MMD² between the feature batches.

    Gretton et al. 2012; Eq. 3 of Ciprijanovic et al. 2020. See
    :class:`training.mmd.MultiKernelMMD` for the formula, bandwidths and estimators.

    Inputs:
        - f_s: ``[m, d]``, f_t: ``[n, d]``. Output: scalar.
    """

    def __init__(self, **mmd_kw):
        super().__init__()
        self.mmd = MultiKernelMMD(**mmd_kw)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """MMD²(f_s, f_t)."""
        return self.mmd(f_s, f_t)


def ganin_coeff(p: float, coeff: float = 1.0, gamma: float = 10.0) -> float:
    """Ganin et al. 2016 schedule ``coeff · (2 / (1 + exp(-γ p)) - 1)``: 0 at p=0, → coeff."""
    return coeff * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


class DomainAdversarialLoss(TransferLoss):
    r"""DANN domain-adversarial loss (Ganin et al. 2016, JMLR 17; Eq. 4 of the paper).

    Features go through gradient reversal (coefficient λ) into a :class:`DomainClassifier`
    ``D``; the loss is the binary cross-entropy of the domain labels (source = 1, target = 0,
    as in the authors' ``loss.PADA``), averaged over the joint batch:

    .. math::
        L_{TL} = -\frac{1}{m+n}\Big[\sum_i \log D(s_i) + \sum_j \log(1 - D(t_j))\Big]

    Minimising it trains ``D``; the reversed gradient makes the features domain-invariant.

    Args:
        feature_dim: size of the input features.
        schedule: ``"ganin"`` (λ(p) = coeff · (2/(1+e^{-γp}) - 1), p = training progress)
            or ``"constant"`` (λ = coeff, the authors' choice with coeff 1).
        coeff: the GRL coefficient (its maximum under ``"ganin"``).
        gamma: γ of the Ganin schedule. Default 10.
        hidden: domain-classifier width. Default 1024.
        dropout: domain-classifier dropout. Default 0.5.

    Inputs:
        - f_s: ``[m, d]``, f_t: ``[n, d]``. Output: scalar.

    Attributes:
        last_domain_accuracy: the domain classifier's accuracy on the last batch (a detached
            0-dim tensor, so reading it costs no device sync unless ``.item()`` is called).
    """

    def __init__(
        self,
        feature_dim: int,
        schedule: str = "ganin",
        coeff: float = 1.0,
        gamma: float = 10.0,
        hidden: int = 1024,
        dropout: float = 0.5,
    ):
        super().__init__()
        if schedule not in ("ganin", "constant"):
            raise ValueError(f"unknown grl schedule {schedule!r}; valid: ganin, constant")
        self.domain_classifier = DomainClassifier(feature_dim, hidden=hidden, dropout=dropout)
        self.schedule, self.coeff, self.gamma = schedule, float(coeff), float(gamma)
        self.progress = 0.0
        self.last_domain_accuracy = torch.tensor(float("nan"))

    def set_progress(self, p: float) -> None:
        """Set the training progress ``p`` (clamped to [0, 1]) for the Ganin schedule."""
        self.progress = min(max(float(p), 0.0), 1.0)

    @property
    def grl_coeff(self) -> float:
        """The current gradient-reversal coefficient λ."""
        if self.schedule == "constant":
            return self.coeff
        return ganin_coeff(self.progress, self.coeff, self.gamma)

    def parameter_groups(self, base_lr: float, dc_lr_mult: float) -> list[dict[str, Any]]:
        """The domain classifier's parameters at ``lr = base_lr · dc_lr_mult``."""
        return [{"params": list(self.domain_classifier.parameters()), "lr": base_lr * dc_lr_mult}]

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """BCE of the domain classifier on reversed features (source = 1, target = 0)."""
        z = grad_reverse(torch.cat([f_s, f_t], dim=0), self.grl_coeff)
        logits = self.domain_classifier(z).squeeze(1)
        labels = torch.cat([logits.new_ones(f_s.shape[0]), logits.new_zeros(f_t.shape[0])])
        with torch.no_grad():
            self.last_domain_accuracy = ((logits > 0).to(labels) == labels).float().mean()
        return F.binary_cross_entropy_with_logits(logits, labels)


@register_transfer_loss("none")
def _build_none(config: TrainConfig, feature_dim: int) -> TransferLoss:
    return NoTransferLoss()


@register_transfer_loss("mmd")
def _build_mmd(config: TrainConfig, feature_dim: int) -> TransferLoss:
    return MMDLoss(
        bandwidths=config.mmd_bandwidths,
        base=config.mmd_base,
        mul=config.mmd_mul,
        num=config.mmd_num,
        estimator=config.mmd_estimator,
    )


@register_transfer_loss("dann")
def _build_dann(config: TrainConfig, feature_dim: int) -> TransferLoss:
    return DomainAdversarialLoss(
        feature_dim,
        schedule=config.grl_schedule,
        coeff=config.grl_coeff,
        gamma=config.grl_gamma,
    )
