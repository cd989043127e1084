"""Domain-adversarial training, DANN (Ganin et al. 2016, JMLR 17; Eq. 4 of the paper)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from models.grl import grad_reverse
from models.heads import DomainClassifier
from models.registry import Hyper
from training.registry import MethodSpec, register_method
from training.transfer import TransferLoss

__all__ = ["SPEC", "DomainAdversarialLoss", "ganin_coeff"]


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
        lr_mult: the domain classifier's learning rate is ``lr_mult`` times the base one
            (the authors' ``lr_mult`` 10).

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
        lr_mult: float = 10.0,
    ):
        super().__init__()
        if schedule not in ("ganin", "constant"):
            raise ValueError(f"unknown grl schedule {schedule!r}; valid: ganin, constant")
        self.domain_classifier = DomainClassifier(feature_dim, hidden=hidden, dropout=dropout)
        self.schedule, self.coeff, self.gamma = schedule, float(coeff), float(gamma)
        self.progress = 0.0
        self.lr_mult = float(lr_mult)
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

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """The domain classifier's parameters at ``lr = base_lr · lr_mult``."""
        return [{"params": list(self.domain_classifier.parameters()), "lr": base_lr * self.lr_mult}]

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """BCE of the domain classifier on reversed features (source = 1, target = 0)."""
        z = grad_reverse(torch.cat([f_s, f_t], dim=0), self.grl_coeff)
        logits = self.domain_classifier(z).squeeze(1)
        labels = torch.cat([logits.new_ones(f_s.shape[0]), logits.new_zeros(f_t.shape[0])])
        with torch.no_grad():
            self.last_domain_accuracy = ((logits > 0).to(labels) == labels).float().mean()
        return F.binary_cross_entropy_with_logits(logits, labels)


def build(config: Any, feature_dim: int) -> DomainAdversarialLoss:
    """The domain classifier and its gradient-reversal schedule from the config."""
    return DomainAdversarialLoss(feature_dim, schedule=config.grl_schedule,
                                 coeff=config.grl_coeff, gamma=config.grl_gamma,
                                 lr_mult=config.dc_lr_mult)


SPEC = register_method(MethodSpec(
    name="dann", label="adversarial", color="#55A868", build=build, order=20,
    summary="a domain classifier behind gradient reversal (DANN)",
    hyperparameters=(
        Hyper("lambda_tl", 0.25, (1e-2, 10.0, "log-uniform")),
        # Its source validation loss is noisy (the adversarial game): patience 5 stopped it
        # before the one-cycle schedule had annealed the lr (docs/HISTORY.md, generator v3).
        Hyper("patience", 10),
        Hyper("grl_schedule", "ganin", ["ganin", "constant"], choices=("ganin", "constant"),
              doc="ganin: coeff * (2 / (1 + exp(-gamma p)) - 1); constant: coeff"),
        Hyper("grl_coeff", 1.0, (0.1, 2.0), rule=">= 0", doc="gradient-reversal coefficient"),
        Hyper("grl_gamma", 10.0, (1.0, 20.0), rule="> 0", doc="gamma of the Ganin schedule"),
        Hyper("dc_lr_mult", 10.0, (0.5, 20.0, "log-uniform"), rule="> 0",
              doc="domain-classifier lr / base lr (the authors' lr_mult)"),
    ),
))
