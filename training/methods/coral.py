"""Deep CORAL transfer loss (Sun & Saenko 2016, ECCV workshops, arXiv:1607.01719).

"Deep CORAL: Correlation Alignment for Deep Domain Adaptation": aligns the second-order
statistics of the source and target features.
"""

from __future__ import annotations

from typing import Any

import torch

from models.registry import Hyper
from training.registry import MethodSpec, register_method
from training.transfer import TransferLoss

__all__ = ["SPEC", "CoralLoss", "covariance"]


def covariance(f: torch.Tensor) -> torch.Tensor:
    """Unbiased feature covariance ``C = (fᵀf - (1ᵀf)ᵀ(1ᵀf) / n) / (n - 1)``, ``[d, d]``."""
    n = f.shape[0]
    centred = f - f.mean(dim=0, keepdim=True)
    return centred.T @ centred / (n - 1)


class CoralLoss(TransferLoss):
    r"""CORAL: the distance between the source and target feature covariances.

    .. math::
        L_{TL} = \frac{1}{4 d^2} \lVert C_S - C_T \rVert_F^2

    with :func:`covariance` of each batch (Eq. 1 of Sun & Saenko 2016). It is zero when the
    two batches have the same second-order statistics; it ignores the means.

    Inputs:
        - f_s: ``[m, d]``, f_t: ``[n, d]`` (``m, n ≥ 2``). Output: scalar.
    """

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """``‖C_S - C_T‖²_F / (4 d²)``."""
        if f_s.shape[0] < 2 or f_t.shape[0] < 2:
            raise ValueError(f"CORAL needs >= 2 rows per domain, got {f_s.shape[0]} source and "
                             f"{f_t.shape[0]} target")
        d = f_s.shape[1]
        gap = covariance(f_s.float()) - covariance(f_t.float())
        return (gap * gap).sum() / (4 * d * d)


def build(config: Any, feature_dim: int) -> CoralLoss:
    """The CORAL loss (no hyperparameters of its own)."""
    return CoralLoss()


SPEC = register_method(MethodSpec(
    name="coral", label="CORAL", color="#C44E52", build=build, order=30,
    summary="Deep CORAL: aligns source and target feature covariances",
    hyperparameters=(Hyper("lambda_tl", 1.0, (1e-2, 100.0, "log-uniform")),),
))
