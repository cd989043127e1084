"""The transfer-loss interface every method implements.

One training step serves every method: ``loss = L_CL + λ_TL · L_TL`` with
``L_TL = transfer(f_s, f_t)``. The loop also calls, for any method:

- ``set_progress(p)`` each step with the training progress ``p ∈ [0, 1]`` (no-op unless the
  loss has a schedule);
- ``parameter_groups(base_lr)`` once, to add the loss's own trainable parameters to
  the optimizer (``[]`` by default). Each group carries an ``"lr"`` key, so
  ``OneCycleLR(max_lr=[g["lr"] for g in optimizer.param_groups])`` keeps the ratio.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["TransferLoss"]


class TransferLoss(nn.Module):
    """Base class of the transfer losses (see the module docstring for the loop's protocol)."""

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """Scalar loss from source features ``[m, d]`` and target features ``[n, d]``."""
        raise NotImplementedError

    def set_progress(self, p: float) -> None:
        """Tell the loss the training progress ``p ∈ [0, 1]`` (default: ignored)."""

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups for the loss's own parameters (default: none)."""
        return []
