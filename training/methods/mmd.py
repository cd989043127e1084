"""Multi-kernel MMD transfer loss (Gretton et al. 2012; Eq. 3 of Ciprijanovic et al. 2020)."""

from __future__ import annotations

from typing import Any

import torch

from models.registry import Hyper
from training.kernel_mmd import BANDWIDTH_MODES, BASES, ESTIMATORS, MultiKernelMMD
from training.registry import MethodSpec, register_method
from training.transfer import TransferLoss

__all__ = ["SPEC", "MMDLoss"]


class MMDLoss(TransferLoss):
    """MMD transfer loss: multi-kernel Gaussian MMD² between the feature batches.

    ``L_TL = MMD²(f_s, f_t) = E[k(s, s')] + E[k(t, t')] - 2 E[k(s, t)]`` with
    ``k = Σ_σ exp(-‖x - y‖² / (2σ²))``; see :class:`training.kernel_mmd.MultiKernelMMD` for the
    bandwidths and estimators.

    Inputs:
        - f_s: ``[m, d]``, f_t: ``[n, d]``. Output: scalar.
    """

    def __init__(self, **mmd_kw):
        super().__init__()
        self.mmd = MultiKernelMMD(**mmd_kw)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """MMD²(f_s, f_t)."""
        return self.mmd(f_s, f_t)


def build(config: Any, feature_dim: int) -> MMDLoss:
    """The MMD loss with the config's bandwidths and estimator."""
    return MMDLoss(bandwidths=config.mmd_bandwidths, base=config.mmd_base, mul=config.mmd_mul,
                   num=config.mmd_num, estimator=config.mmd_estimator)


SPEC = register_method(MethodSpec(
    name="mmd", label="MMD", color="#DD8452", build=build, order=10,
    summary="multi-kernel Gaussian MMD between source and target features",
    hyperparameters=(
        Hyper("lambda_tl", 1.0, (1e-2, 10.0, "log-uniform")),
        Hyper("mmd_bandwidths", "family", ["family", "authors"], choices=BANDWIDTH_MODES,
              doc="family: sigma_k = base * mul^k; authors: their 19 fixed sigma^2"),
        Hyper("mmd_base", "median", ["median", "mean"], choices=BASES,
              doc="pairwise distance of the joint batch that centres the family"),
        Hyper("mmd_mul", 2.0, (1.5, 3.0), rule="> 1", doc="ratio of consecutive sigma"),
        Hyper("mmd_num", 5, (3, 7), rule=">= 1", doc="number of kernels of the family"),
        Hyper("mmd_estimator", "unbiased", ["unbiased", "biased"], choices=ESTIMATORS,
              doc="unbiased U-statistic (Eq. 3) or biased V-statistic"),
    ),
))
