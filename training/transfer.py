"""The transfer-loss interface every method implements.

One training step serves every method. The loop computes ``L_TL`` and combines it with the
source cross-entropy ``L_CL``:

- ``L_TL = transfer(f_s, f_t)`` for a loss with ``needs_outputs = False`` (the default: MMD,
  DANN, CORAL, …), or ``L_TL = transfer(f_s, f_t, logits_s=..., logits_t=..., y_s=...)``
  (keyword-only extras: the fp32 source and target logits ``[m, C]``, ``[n, C]`` and the
  source labels ``[m]``) for one with ``needs_outputs = True`` (Fisher + entropy, CDAN). The
  target labels never reach a transfer loss.
- ``loss = transfer.combine(L_CL, L_TL, λ_TL)``; the default is ``L_CL + λ_TL · L_TL`` (the
  very expression the loop used before ``combine`` existed, so every method that does not
  override it trains bit for bit as before). A method overrides it to weight the terms its own
  way (SIDDA's learned uncertainty weights) or to add terms of its own that ``λ_TL`` does not
  scale (the Fisher and entropy terms); the record's ``train_tl_loss`` stays the raw ``L_TL``
  and ``train_loss`` the combined ``loss``.

The loop also calls, for any method:

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
    """Base class of the transfer losses (see the module docstring for the loop's protocol).

    Attributes:
        needs_outputs: ``True`` when ``forward`` also takes the keyword-only ``logits_s``,
            ``logits_t`` and ``y_s`` (default ``False``: features only).
    """

    needs_outputs: bool = False

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """Scalar loss from source features ``[m, d]`` and target features ``[n, d]``."""
        raise NotImplementedError

    def combine(self, loss_cl: torch.Tensor, loss_tl: torch.Tensor,
                lambda_tl: float) -> torch.Tensor:
        """The step's total loss from ``L_CL``, ``L_TL``, ``λ_TL`` (default ``L_CL + λ L_TL``)."""
        return loss_cl + lambda_tl * loss_tl

    def set_progress(self, p: float) -> None:
        """Tell the loss the training progress ``p ∈ [0, 1]`` (default: ignored)."""

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups for the loss's own parameters (default: none)."""
        return []
