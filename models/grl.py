"""Gradient reversal layer (Ganin et al. 2016, "Domain-Adversarial Training of Neural Networks").

Forward is the identity; backward multiplies the incoming gradient by ``-coeff``.
"""

from __future__ import annotations

import torch
from torch.autograd import Function

__all__ = ["GradientReverseFunction", "grad_reverse"]


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
