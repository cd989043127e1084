"""Gradient reversal layer (Ganin et al. 2016, "Domain-Adversarial Training of Neural Networks").

Forward is the identity; backward multiplies the incoming gradient by ``-coeff``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd import Function

__all__ = ["GradientReversal", "GradientReverseFunction", "grad_reverse"]


class GradientReverseFunction(Function):
    """Autograd function: ``y = x``; ``dL/dx = -coeff · dL/dy``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # noqa: D102
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad_output.neg() * ctx.coeff, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; reverses and scales the gradient by ``coeff``."""
    return GradientReverseFunction.apply(x, coeff)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; ``coeff`` may be changed between steps.

    Args:
        coeff: the gradient multiplier λ (the gradient becomes ``-λ · grad``). Default 1.
    """

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.coeff = float(coeff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` unchanged; its gradient is reversed and scaled by ``coeff``."""
        return grad_reverse(x, self.coeff)

    def extra_repr(self) -> str:  # noqa: D102
        return f"coeff={self.coeff}"
