"""No domain adaptation: ``L_TL = 0``; training sees the source alone (the paper's baseline)."""

from __future__ import annotations

from typing import Any

import torch

from models.registry import Hyper
from training.registry import MethodSpec, register_method
from training.transfer import TransferLoss

__all__ = ["SPEC", "NoTransferLoss"]


class NoTransferLoss(TransferLoss):
    """``L_TL = 0`` (a zero scalar on ``f_s``'s device and dtype)."""

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """Return ``0``."""
        return f_s.new_zeros(())


def build(config: Any, feature_dim: int) -> NoTransferLoss:
    """The zero loss."""
    return NoTransferLoss()


SPEC = register_method(MethodSpec(
    name="none", label="no-DA", color="#4C72B0", build=build, needs_target=False, order=0,
    summary="no transfer loss; trains on the source only",
    hyperparameters=(Hyper("lambda_tl", 0.0),),
))
