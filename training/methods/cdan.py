r"""Conditional domain-adversarial training, CDAN (Long et al. 2018, NeurIPS; arXiv:1705.10667).

"Conditional Adversarial Domain Adaptation": the domain classifier ``D`` sees the multilinear
map of the features ``f`` and the classifier's predictions ``g = softmax(logits)``,

.. math::
    h = f \otimes g \in \mathbb{R}^{d C}, \qquad h_{(i, c)} = f_i\, g_c,

so that it can align the joint distribution of features and classes rather than the features
alone. As in DANN (:mod:`training.methods.dann`), ``h`` reaches ``D`` through gradient reversal
with the same schedule, and the loss is the binary cross-entropy of the domain labels (source
= 1, target = 0):

.. math::
    L_{TL} = -\frac{1}{m+n}\Big[\sum_i \log D(h^s_i) + \sum_j \log(1 - D(h^t_j))\Big].

CDAN+E (``cdan_entropy = 1``) weights each example by its certainty,
:math:`w = 1 + e^{-H(g)}` with :math:`H(g) = -\sum_c g_c \log g_c`, normalised to sum 1 in each
domain, :math:`L_{TL} = \tfrac12 \big[\sum_i \hat w^s_i \ell^s_i + \sum_j \hat w^t_j \ell^t_j\big]`
(the authors' ``loss.CDAN``). ``g`` and the weights are detached, as in the authors' code
for ``g`` (their entropy weights pass a reversed gradient to the classifier; here they do
not, as in the Transfer-Learning-Library). The full map is used (DeepMerge: 2592 × 2 = 5184
inputs, ResNet18: 256 × 2 = 512); the paper's randomised map is for much larger ``d C``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from models.grl import grad_reverse
from models.registry import Hyper
from training.methods import dann
from training.methods.dann import DomainAdversarialLoss
from training.registry import MethodSpec, register_method

__all__ = ["SPEC", "ConditionalAdversarialLoss", "certainty_weights", "multilinear_map"]


def multilinear_map(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``f ⊗ g`` flattened: ``[B, d] × [B, C] -> [B, d·C]`` with entry ``i·C + c = f_i g_c``."""
    return torch.einsum("bd,bc->bdc", f, g).reshape(f.shape[0], -1)


def certainty_weights(g: torch.Tensor, m: int) -> torch.Tensor:
    """CDAN+E weights ``1 + exp(-H(g))``, normalised to sum 1 over rows ``:m`` and ``m:``."""
    entropy = -(g * torch.log(g.clamp(min=1e-12))).sum(dim=1)
    w = 1.0 + torch.exp(-entropy)
    return torch.cat([w[:m] / w[:m].sum(), w[m:] / w[m:].sum()])


class ConditionalAdversarialLoss(DomainAdversarialLoss):
    r"""CDAN: the DANN loss on ``f ⊗ softmax(logits)`` (optionally entropy-weighted, CDAN+E).

    The GRL schedule, the domain classifier (on ``d · C`` inputs), its learning rate and
    ``last_domain_accuracy`` are DANN's (:class:`~training.methods.dann.DomainAdversarialLoss`).

    Args:
        feature_dim: size of the features ``d``.
        num_classes: number of logits ``C``. Default 2.
        entropy: weight the examples by certainty (CDAN+E). Default True.
        **dann_kw: ``schedule``, ``coeff``, ``gamma``, ``hidden``, ``dropout``, ``lr_mult`` of
            :class:`~training.methods.dann.DomainAdversarialLoss`.

    Inputs:
        - f_s: ``[m, d]``, f_t: ``[n, d]``; keyword-only ``logits_s [m, C]``, ``logits_t [n, C]``
          (``y_s`` is accepted and ignored). Output: scalar.
    """

    needs_outputs = True

    def __init__(self, feature_dim: int, num_classes: int = 2, entropy: bool = True,
                 **dann_kw: Any):
        super().__init__(feature_dim * num_classes, **dann_kw)
        self.feature_dim, self.num_classes, self.entropy = feature_dim, num_classes, bool(entropy)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, *, logits_s: torch.Tensor,
                logits_t: torch.Tensor, y_s: torch.Tensor | None = None) -> torch.Tensor:
        """(Weighted) BCE of the domain classifier on reversed ``f ⊗ g`` (source 1, target 0).

        Raises:
            ValueError: the logits do not have ``num_classes`` columns.
        """
        if logits_s.shape[1] != self.num_classes or logits_t.shape[1] != self.num_classes:
            raise ValueError(f"CDAN was built for {self.num_classes} classes, got logits of "
                             f"{logits_s.shape[1]} and {logits_t.shape[1]} columns")
        m = f_s.shape[0]
        g = F.softmax(torch.cat([logits_s, logits_t], dim=0), dim=1).detach()
        h = multilinear_map(torch.cat([f_s, f_t], dim=0), g)
        logits = self.domain_classifier(grad_reverse(h, self.grl_coeff)).squeeze(1)
        labels = torch.cat([logits.new_ones(m), logits.new_zeros(f_t.shape[0])])
        with torch.no_grad():
            self.last_domain_accuracy = ((logits > 0).to(labels) == labels).float().mean()
        if not self.entropy:
            return F.binary_cross_entropy_with_logits(logits, labels)
        per_row = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        return (certainty_weights(g, m) * per_row).sum() / 2.0


def build(config: Any, feature_dim: int) -> ConditionalAdversarialLoss:
    """CDAN(+E) with DANN's gradient-reversal schedule and domain-classifier lr from the config."""
    return ConditionalAdversarialLoss(feature_dim, entropy=bool(config.cdan_entropy),
                                      schedule=config.grl_schedule, coeff=config.grl_coeff,
                                      gamma=config.grl_gamma, lr_mult=config.dc_lr_mult)


SPEC = register_method(MethodSpec(
    name="cdan", label="CDAN", color="#CCB974", build=build, order=36,
    summary="a domain classifier on features ⊗ predictions behind gradient reversal "
            "(CDAN, CDAN+E)",
    hyperparameters=(
        Hyper("lambda_tl", 1.0, (1e-2, 10.0, "log-uniform")),  # the paper's trade-off 1
        # DANN's patience, GRL schedule and domain-classifier lr, with their ranges.
        *(h for h in dann.SPEC.hyperparameters if h.name != "lambda_tl"),
        Hyper("cdan_entropy", 1, [0, 1], choices=(0, 1),
              doc="1 = CDAN+E: examples weighted by 1 + exp(-entropy of the prediction)"),
    ),
))
