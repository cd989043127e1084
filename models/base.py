"""The backbone interface: images ``[B, 3, 75, 75]`` -> flat features ``[B, feature_dim]``.

The classifier head (:mod:`models.heads`) is separate, so a transfer loss can act on features
(timm's ``forward = head(features(x))`` split).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """Base class: ``features(x) -> [B, feature_dim]``; ``forward`` is ``features``."""

    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return flat features ``[B, feature_dim]`` for images ``[B, C, H, W]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`features`."""
        return self.features(x)
