r"""Fisher + entropy terms on top of MMD or DANN (DeepMerge II; Ćiprijanović et al. 2021).

"DeepMerge II: Building robust deep learning algorithms for merging galaxy identification
across domains" (MNRAS 506, 677) adds to MMD and to domain-adversarial training the Fisher
loss of Zhang et al. (2020, "Fisher Deep Domain Adaptation", SDM; arXiv:2003.05636) on the
labelled *source* features, and entropy minimisation on the *target* predictions:

.. math::
    L = L_{CL} + \lambda_{TL} L_{TL}
        + \underbrace{\alpha_{intra}\, \mathrm{tr}\, S_W - \alpha_{inter}\, \mathrm{tr}\, S_B}_{
          \text{Fisher (trace difference)}}
        + \beta\, \bar H(p_t),

with, over the ``m`` source rows of the batch (class ``k`` has ``m_k`` rows, class centre
:math:`\mu_k` = their mean feature, :math:`\mu` = the mean of all source features),

.. math::
    \mathrm{tr}\, S_W = \frac{1}{m} \sum_i \lVert f_i - \mu_{y_i} \rVert^2, \qquad
    \mathrm{tr}\, S_B = \sum_k \frac{m_k}{m} \lVert \mu_k - \mu \rVert^2, \qquad
    \bar H(p_t) = -\frac{1}{n} \sum_j \sum_c p_{jc} \log p_{jc},

``p_t = softmax(target logits)``. Compactness within classes (small :math:`S_W`) and separation
between them (large :math:`S_B`) make the source features discriminative; low target entropy
pushes the decision boundary away from the target data. The Fisher and entropy terms are not
scaled by λ_TL (as in the authors' code: ``total = CE + trade_off·transfer + fisher +
em_coef·entropy``); ``L_TL`` (the MMD or DANN loss, recorded as ``train_tl_loss``) is the wrapped
method's unchanged.

Differences from the authors' code (``AleksCipri/DeepMergeDomainAdaptation``, from FisherDA):
it keeps the class centres as trainable parameters (centre-loss style, sums over the batch)
and defaults to the trace *ratio*; here the centres are the batch's class means (the scatter
matrices themselves, no extra parameters) in trace-difference form with per-row means, and the
entropy is taken over the target rows only (their code takes the joint batch). The trace
difference is unbounded below: once :math:`\alpha_{inter} \mathrm{tr} S_B > \alpha_{intra}
\mathrm{tr} S_W`, scaling the features up lowers it without limit (a diverging trial ends as
``F_nan``), hence the default :math:`\alpha_{inter} < \alpha_{intra}`. The traces scale with
the features: on the tiny test data at initialisation :math:`\mathrm{tr}\, S_W` is ~10³ for
DeepMerge's 2592 features and ~0.3 for ResNet18's 256-wide bottleneck, so the defaults
(α_intra = 10⁻³, α_inter = 10⁻⁴: a Fisher term of the order of ``L_CL`` on DeepMerge) are not
from the paper, and the searched ranges span six decades.

Registers ``mmdfe`` (MMD + Fisher + entropy) and ``dannfe`` (DANN + Fisher + entropy); both reuse
the MMD and DANN builders and hyperparameters.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from models.registry import Hyper
from training.methods import dann, mmd
from training.registry import MethodSpec, register_method
from training.transfer import TransferLoss

__all__ = ["DANNFE", "FISHER_HYPERS", "MMDFE", "FisherEntropyLoss", "fisher_scatter",
           "mean_entropy"]


def fisher_scatter(f: torch.Tensor, y: torch.Tensor,
                   num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tr S_W, tr S_B)`` of features ``f [m, d]`` with labels ``y [m]`` (per-row means).

    Class centres are the batch's class means; a class absent from the batch adds nothing.
    """
    onehot = F.one_hot(y, num_classes).to(f.dtype)  # [m, C]
    counts = onehot.sum(dim=0)  # [C]
    centres = onehot.T @ f / counts.clamp(min=1.0).unsqueeze(1)  # [C, d]; absent class: 0
    within = (f - centres[y]).pow(2).sum(dim=1).mean()
    between = (counts / f.shape[0] * (centres - f.mean(dim=0)).pow(2).sum(dim=1)).sum()
    return within, between


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of ``softmax(logits)`` over the rows of ``logits [n, C]``."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


class FisherEntropyLoss(TransferLoss):
    r"""A transfer loss plus the Fisher terms on source features and target entropy.

    ``forward`` returns the wrapped loss's ``L_TL`` and keeps
    :math:`\alpha_{intra} \mathrm{tr} S_W - \alpha_{inter} \mathrm{tr} S_B + \beta \bar H(p_t)`
    for :meth:`combine`, which adds it to the wrapped loss's combination (not scaled by λ_TL).

    Args:
        base: the wrapped transfer loss (MMD or DANN); its schedule and parameters are used.
        fisher_intra: α_intra, weight of ``tr S_W``.
        fisher_inter: α_inter, weight of ``tr S_B`` (subtracted).
        entropy_weight: β, weight of the mean target entropy.

    Inputs:
        - f_s: ``[m, d]``, f_t: ``[n, d]``; keyword-only ``logits_s [m, C]``, ``logits_t [n, C]``,
          ``y_s [m]``. Output: scalar ``L_TL`` of ``base``.

    Attributes:
        last_terms: detached ``{"fisher_within", "fisher_between", "target_entropy"}`` of the
            last batch.
    """

    needs_outputs = True

    def __init__(self, base: TransferLoss, fisher_intra: float = 1e-3,
                 fisher_inter: float = 1e-4, entropy_weight: float = 0.1):
        super().__init__()
        self.base = base
        self.fisher_intra, self.fisher_inter = float(fisher_intra), float(fisher_inter)
        self.entropy_weight = float(entropy_weight)
        self.last_terms: dict[str, torch.Tensor] = {}
        self._extra: torch.Tensor | None = None

    def extra_terms(self, f_s: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor,
                    y_s: torch.Tensor) -> torch.Tensor:
        """``α_intra tr S_W(f_s, y_s) - α_inter tr S_B(f_s, y_s) + β H̄(softmax(logits_t))``."""
        within, between = fisher_scatter(f_s, y_s, logits_s.shape[1])
        entropy = mean_entropy(logits_t)
        self.last_terms = {"fisher_within": within.detach(), "fisher_between": between.detach(),
                           "target_entropy": entropy.detach()}
        return (self.fisher_intra * within - self.fisher_inter * between
                + self.entropy_weight * entropy)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, *, logits_s: torch.Tensor,
                logits_t: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
        """The wrapped ``L_TL``; the Fisher and entropy terms wait for :meth:`combine`."""
        if self.base.needs_outputs:
            loss_tl = self.base(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=y_s)
        else:
            loss_tl = self.base(f_s, f_t)
        self._extra = self.extra_terms(f_s, logits_s, logits_t, y_s)
        return loss_tl

    def combine(self, loss_cl: torch.Tensor, loss_tl: torch.Tensor,
                lambda_tl: float) -> torch.Tensor:
        """The wrapped loss's ``L_CL + λ L_TL`` plus the Fisher and entropy terms of the step.

        Raises:
            RuntimeError: no :meth:`forward` since the last call.
        """
        if self._extra is None:
            raise RuntimeError("FisherEntropyLoss.combine() needs a forward() first")
        extra, self._extra = self._extra, None
        return self.base.combine(loss_cl, loss_tl, lambda_tl) + extra

    def set_progress(self, p: float) -> None:
        """Pass the training progress to the wrapped loss (DANN's GRL schedule)."""
        self.base.set_progress(p)

    def parameter_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """The wrapped loss's groups (DANN's domain classifier); the terms have no parameters."""
        return self.base.parameter_groups(base_lr)


#: The three fields the Fisher + entropy methods add to the wrapped method's.
FISHER_HYPERS: tuple[Hyper, ...] = (
    Hyper("fisher_intra", 1e-3, (1e-5, 10.0, "log-uniform"), rule=">= 0",
          doc="Fisher loss: weight of the within-class scatter tr S_W of the source features"),
    Hyper("fisher_inter", 1e-4, (1e-6, 1.0, "log-uniform"), rule=">= 0",
          doc="Fisher loss: weight of the between-class scatter tr S_B (subtracted)"),
    Hyper("entropy_weight", 0.1, (1e-3, 1.0, "log-uniform"), rule=">= 0",
          doc="weight of the mean entropy of the target predictions"),
)


def _wrap(base: TransferLoss, config: Any) -> FisherEntropyLoss:
    return FisherEntropyLoss(base, fisher_intra=config.fisher_intra,
                             fisher_inter=config.fisher_inter,
                             entropy_weight=config.entropy_weight)


def build_mmdfe(config: Any, feature_dim: int) -> FisherEntropyLoss:
    """MMD (:func:`training.methods.mmd.build`) plus the Fisher and entropy terms."""
    return _wrap(mmd.build(config, feature_dim), config)


def build_dannfe(config: Any, feature_dim: int) -> FisherEntropyLoss:
    """DANN (:func:`training.methods.dann.build`) plus the Fisher and entropy terms."""
    return _wrap(dann.build(config, feature_dim), config)


MMDFE = register_method(MethodSpec(
    name="mmdfe", label="MMD + Fisher + entropy", color="#DA8BC3", build=build_mmdfe, order=32,
    summary="MMD plus the Fisher loss on source features and target entropy minimisation "
            "(DeepMerge II)",
    hyperparameters=(*mmd.SPEC.hyperparameters, *FISHER_HYPERS),
))

DANNFE = register_method(MethodSpec(
    name="dannfe", label="adversarial + Fisher + entropy", color="#8172B3", build=build_dannfe,
    order=34,
    summary="DANN plus the Fisher loss on source features and target entropy minimisation "
            "(DeepMerge II)",
    hyperparameters=(*dann.SPEC.hyperparameters, *FISHER_HYPERS),
))
