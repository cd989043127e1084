r"""SIDDA: Sinkhorn divergence with learned loss weights (Pandya et al. 2025, arXiv:2501.14048).

"SIDDA: SInkhorn Dynamic Domain Adaptation for Image Classification with Equivariant Neural
Networks". The transfer loss is the debiased Sinkhorn divergence between the source and target
feature batches (``geomloss.SamplesLoss("sinkhorn", p=2)``, cost :math:`C(x, y) =
\tfrac12 \lVert x - y \rVert^2`, temperature :math:`\varepsilon = \mathrm{blur}^2`),

.. math::
    L_{TL} = S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta)
        - \tfrac12 \mathrm{OT}_\varepsilon(\alpha, \alpha)
        - \tfrac12 \mathrm{OT}_\varepsilon(\beta, \beta),

with the blur set from each batch, as in the authors' ``train_SIDDA.py``: ``blur = max(0.05 ·
max_{i,j} ‖s_i - t_j‖, 0.01)`` (the largest source-target distance, detached; the fraction is
``sinkhorn_blur``), and ε-scaling ratio ``sinkhorn_scaling`` 0.9 (the authors' value). The
classification and transfer losses are weighted by two learned parameters (homoscedastic
uncertainty weighting, Kendall et al. 2018, in SIDDA's form):

.. math::
    L = \frac{1}{2\eta_1^2} L_{CL} + \frac{\lambda_{TL}}{2\eta_2^2} L_{TL}
        + \log\lvert \eta_1 \eta_2 \rvert,

:math:`\eta_1 = \eta_2 = 1` at the start, trained with the network in their own optimizer
group (no weight decay) at ``sidda_lr_mult`` (10) times the base lr (SIDDA trains them at its
network's lr of 10⁻², ten times DeepMerge's default here), and kept at
:math:`\eta_1 \ge 10^{-3}`, :math:`\eta_2 \ge \eta_1/4` (SIDDA clamps them after the backward
pass; here just before the step's loss is formed). So the
weight of ``L_TL`` is learned: λ_TL is fixed at 1 and not searched (any other value only rescales
the starting weight of ``L_TL``).

Left out from the authors' script: the source-only warm-up epochs, clipping the network's
gradient norm at 10, and their optimizer/schedule (this project's Adam + one-cycle is used).
The ε-schedule of geomloss is computed on the host, so a step has one device synchronisation
(blur and diameter read together).
"""

from __future__ import annotations

from typing import Any

import geomloss
import torch
from torch import nn

from models.registry import Hyper
from training.registry import MethodSpec, register_method
from training.transfer import TransferLoss

__all__ = ["BLUR_FLOOR", "ETA_MIN", "SPEC", "SinkhornLoss", "sinkhorn_divergence"]

#: Smallest blur (the authors' lower bound).
BLUR_FLOOR = 0.01
#: Smallest η₁ (the authors' clamp; η₂ is kept at ≥ η₁ / 4).
ETA_MIN = 1e-3


def sinkhorn_divergence(x: torch.Tensor, y: torch.Tensor, blur: float, scaling: float = 0.9,
                        diameter: float | None = None) -> torch.Tensor:
    """The debiased Sinkhorn divergence (geomloss) ``S_ε(x, y)``, ``p = 2``, tensorized backend."""
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, diameter=diameter,
                                backend="tensorized")
    return loss(x, y)


class SinkhornLoss(TransferLoss):
    r"""SIDDA's transfer loss and its learned weighting of ``L_CL`` and ``L_TL``.

    Args:
        blur_fraction: ``blur = max(blur_fraction · max ‖s_i - t_j‖, BLUR_FLOOR)``. Default 0.05.
        scaling: ε-scaling ratio of the Sinkhorn loop, in (0, 1). Default 0.9.
        lr_mult: η₁ and η₂ train at ``lr_mult`` times the base lr. Default 10.

    Inputs:
        - f_s: ``[m, d]``, f_t: ``[n, d]``. Output: scalar ``S_ε(f_s, f_t)``.

    Attributes:
        eta_cl, eta_tl: the learned η₁ (of ``L_CL``) and η₂ (of ``L_TL``).
        last_blur: the blur of the last batch (a float).
    """

    def __init__(self, blur_fraction: float = 0.05, scaling: float = 0.9, lr_mult: float = 10.0):
        super().__init__()
        if not 0.0 < scaling < 1.0:
            raise ValueError(f"Sinkhorn scaling must be in (0, 1), got {scaling}")
        self.blur_fraction, self.scaling = float(blur_fraction), float(scaling)
        self.lr_mult = float(lr_mult)
        self.eta_cl = nn.Parameter(torch.tensor(1.0))
        self.eta_tl = nn.Parameter(torch.tensor(1.0))
        self.last_blur = float("nan")

    def blur_and_diameter(self, f_s: torch.Tensor, f_t: torch.Tensor) -> tuple[float, float]:
        """``(blur, diameter)`` of a batch, read from the device in one synchronisation.

        The diameter is geomloss's own estimate (the diagonal of the joint bounding box), so
        the loss equals ``SamplesLoss`` at this blur without a second read.
        """
        with torch.no_grad():
            both = torch.cat([f_s, f_t], dim=0)
            diameter = (both.max(dim=0).values - both.min(dim=0).values).norm()
            farthest = torch.cdist(f_s, f_t).max()
            farthest, diameter = torch.stack([farthest, diameter]).tolist()
        blur = max(self.blur_fraction * farthest, BLUR_FLOOR)
        return blur, max(diameter, blur)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """``S_ε(f_s, f_t)`` with the blur of this batch."""
        blur, diameter = self.blur_and_diameter(f_s, f_t)
        self.last_blur = blur
        return sinkhorn_divergence(f_s, f_t, blur, self.scaling, diameter)

    def combine(self, loss_cl: torch.Tensor, loss_tl: torch.Tensor,
                lambda_tl: float) -> torch.Tensor:
        """``L_CL / (2η₁²) + λ L_TL / (2η₂²) + log|η₁ η₂|`` after clamping η₁, η₂."""
        with torch.no_grad():
            self.eta_cl.clamp_(min=ETA_MIN)
            self.eta_tl.copy_(torch.maximum(self.eta_tl, 0.25 * self.eta_cl))
        return (loss_cl / (2 * self.eta_cl**2) + lambda_tl * loss_tl / (2 * self.eta_tl**2)
                + torch.log(self.eta_cl.abs() * self.eta_tl.abs()))

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """η₁ and η₂ at ``base_lr · lr_mult``, without weight decay."""
        return [{"params": [self.eta_cl, self.eta_tl], "lr": base_lr * self.lr_mult,
                 "weight_decay": 0.0}]


def build(config: Any, feature_dim: int) -> SinkhornLoss:
    """The Sinkhorn loss with the config's blur fraction and ε-scaling."""
    return SinkhornLoss(blur_fraction=config.sinkhorn_blur, scaling=config.sinkhorn_scaling,
                        lr_mult=config.sidda_lr_mult)


SPEC = register_method(MethodSpec(
    name="sidda", label="SIDDA", color="#64B5CD", build=build, order=38,
    summary="Sinkhorn divergence, blur from the batch, learned loss weights (SIDDA; "
            "lambda_tl not searched)",
    hyperparameters=(
        Hyper("lambda_tl", 1.0),  # learned through eta_tl: fixed, not searched
        Hyper("sinkhorn_blur", 0.05, rule="> 0",
              doc="blur = max(sinkhorn_blur * max source-target distance, 0.01)"),
        Hyper("sinkhorn_scaling", 0.9, rule="in (0, 1)",
              doc="epsilon-scaling ratio of the Sinkhorn loop (geomloss scaling)"),
        Hyper("sidda_lr_mult", 10.0, rule="> 0",
              doc="lr of the learned loss weights eta_1, eta_2 / base lr"),
    ),
))
