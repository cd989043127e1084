"""Multi-kernel Gaussian MMD (Gretton et al. 2012, JMLR 13; Eq. 3 of Ciprijanovic et al. 2020).

The kernel MMD itself: Gaussian kernels, their bandwidths and the estimators of MMD². Named
``kernel_mmd`` so as not to be mistaken for ``training/methods/mmd.py``, the ``mmd`` *method*
(its spec, hyperparameters and transfer loss), which builds on :class:`MultiKernelMMD`; the
label-free diagnostic :func:`training.evaluate.feature_mmd` uses it too.

All kernels come from ONE pairwise squared-distance matrix of the concatenated batch. The
distances are computed in float64 from the Gram matrix of the centred features, with the
diagonal set to exactly 0 and negatives clamped to 0 — float32 ``torch.cdist`` (matrix-multiply
path) gives inexact small distances and a non-zero diagonal, which biased the
MMD of large-norm features by ~1e-2. Their gradient is analytic, in the features' dtype. The
kernels are then summed in float32 into one ``[n, n]`` buffer (custom autograd functions keep
the memory traffic low: no ``[num_kernels, n, n]`` tensor, no float64 backward).

Bandwidths (``k(x, y) = Σ_σ exp(-‖x - y‖² / (2σ²))``):

- ``"authors"``: the 19 values of the authors' ``loss.mmd_distance``
  (github.com/AleksCipri/DeepMergeDomainAdaptation): ``1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1,
  5, 10, 15, 20, 25, 30, 35, 100, 1e3, 1e4, 1e5, 1e6``. Their ``gaussian_kernel_matrix`` uses
  ``beta = 1 / (2 v)``, i.e. ``exp(-‖x - y‖² / (2 v))``: each value ``v`` is σ², not σ.
- ``"family"``: ``σ_k = base · mul^k`` for ``k = -⌊num/2⌋, …, num - 1 - ⌊num/2⌋``, where
  ``base`` is the median or mean pairwise distance ‖x - y‖ (off-diagonal) of the current joint
  batch, detached from the graph.

The authors' code uses the biased estimator and clamps the value to ≥ 1e-4; here both
estimators are offered and nothing is clamped (the unbiased value can be slightly negative).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.autograd import Function

__all__ = [
    "AUTHORS_SIGMA2",
    "MultiKernelMMD",
    "family_sigma2",
    "mmd_weights",
    "pairwise_sq_dists",
    "weighted_kernel_sum",
]

AUTHORS_SIGMA2: tuple[float, ...] = (
    1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0,
    100.0, 1e3, 1e4, 1e5, 1e6,
)  # fmt: skip
BANDWIDTH_MODES = ("family", "authors")
BASES = ("median", "mean")
ESTIMATORS = ("unbiased", "biased")


class _SquaredDistances(Function):
    """``D_ij = ‖z_i - z_j‖²``: forward in float64 (exact enough), analytic backward in z's dtype.

    Backward: ``∂L/∂z_i = 2 Σ_j S_ij (z_i - z_j)`` with ``S = A + Aᵀ``, ``A = ∂L/∂D``, i.e.
    ``2 (rowsum(S) ⊙ z - S z)`` — one matrix product in the features' dtype, no float64 copy.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(z)
        z64 = z.detach().to(torch.float64, copy=True)
        z64 -= z64.mean(dim=0, keepdim=True)  # translation invariant; less cancellation
        gram = z64 @ z64.t()
        sq = gram.diagonal().clone()
        d = gram.mul_(-2.0).add_(sq.unsqueeze(1)).add_(sq.unsqueeze(0)).clamp_min_(0.0)
        return d.fill_diagonal_(0.0)

    @staticmethod
    def backward(ctx, grad_d: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (z,) = ctx.saved_tensors
        a = grad_d.to(z.dtype)
        s = a + a.t()
        return 2.0 * (s.sum(dim=1, keepdim=True) * z - s @ z)


def pairwise_sq_dists(z: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[n, n]`` in float64, diagonal exactly 0, entries ≥ 0.

    Computed from the Gram matrix of the centred features in float64 (cancellation in float32
    makes small distances of large-norm features inexact); differentiable, with the exact
    analytic gradient computed in ``z``'s dtype.

    Args:
        z: features ``[n, d]`` (any float dtype).
    """
    return _SquaredDistances.apply(z)


@functools.lru_cache(maxsize=8)
def _upper_triangle(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(n, n, offset=1, device=device)
    return rows, cols


def family_sigma2(
    sq_dists: torch.Tensor, base: str = "median", mul: float = 2.0, num: int = 5
) -> torch.Tensor:
    """σ² values of the geometric family ``σ_k = base · mul^k`` (detached, float64 ``[num]``).

    Args:
        sq_dists: ``[n, n]`` symmetric squared distances of the joint batch (diagonal 0).
        base: ``"median"`` (lower median) or ``"mean"`` of the distances ‖x - y‖, i ≠ j.
        mul: ratio between consecutive σ.
        num: number of bandwidths; ``k = -⌊num/2⌋, …, num - 1 - ⌊num/2⌋``.
    """
    with torch.no_grad():
        off = sq_dists[_upper_triangle(sq_dists.shape[0], sq_dists.device)].double()
        if off.numel() == 0:
            b = torch.ones((), dtype=torch.float64, device=sq_dists.device)
        elif base == "median":
            b = off.median().sqrt()
        elif base == "mean":
            b = off.sqrt().mean()
        else:
            raise ValueError(f"unknown mmd base {base!r}; valid: {', '.join(BASES)}")
        b = b.clamp_min(1e-12)
        k = torch.arange(num, dtype=torch.float64, device=sq_dists.device) - num // 2
        return (b * mul**k) ** 2


@functools.lru_cache(maxsize=16)
def mmd_weights(
    m: int, n: int, estimator: str, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Weights ``W [m+n, m+n]`` with ``MMD² = Σ_ij W_ij K_ij`` (cached; do not modify).

    Unbiased (U-statistic, Eq. 3 of the paper; needs ``m, n ≥ 2``)::

        1/(m(m-1)) Σ_{i≠j} k(s_i, s_j) + 1/(n(n-1)) Σ_{i≠j} k(t_i, t_j) - 2/(mn) Σ_{i,j} k(s_i, t_j)

    so ``W_ss = 1/(m(m-1))``, ``W_tt = 1/(n(n-1))`` off the diagonal, 0 on it, and
    ``W_st = W_ts = -1/(mn)``. Biased (V-statistic): ``W_ss = 1/m²``, ``W_tt = 1/n²`` everywhere.
    """
    if estimator == "unbiased":
        if m < 2 or n < 2:
            raise ValueError(f"the unbiased MMD needs ≥ 2 samples per domain, got {m} and {n}")
        wss, wtt = 1.0 / (m * (m - 1)), 1.0 / (n * (n - 1))
    elif estimator == "biased":
        wss, wtt = 1.0 / (m * m), 1.0 / (n * n)
    else:
        raise ValueError(f"unknown mmd estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    w = torch.full((m + n, m + n), -1.0 / (m * n), dtype=torch.float64)
    w[:m, :m] = wss
    w[m:, m:] = wtt
    if estimator == "unbiased":
        w.fill_diagonal_(0.0)
    return w.to(dtype=dtype, device=device)


def host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a value on the host costs nothing (CPU) rather than a device sync."""
    return device.type == "cpu"


class _WeightedKernelSum(Function):
    """``Σ_k Σ_ij W_ij exp(-γ_k D_ij)`` with one ``[n, n]`` accumulator (no ``[k, n, n]`` tensor).

    The gradient ``∂/∂D_ij = -W_ij Σ_k γ_k exp(-γ_k D_ij)`` is accumulated in the same loop.

    On the CPU, a kernel so narrow that ``exp(-γ_k D_ij)`` underflows to exactly 0 for every
    ``i ≠ j`` (e.g. the authors' σ² = 1e-6 on distances ≫ σ²) is the identity matrix and adds
    no gradient, so it is added to the diagonal without evaluating it (bit-for-bit the same
    result; deciding it reads ``γ`` and the smallest distance on the host, free on the CPU).
    On an accelerator that host read would be a device synchronisation per step, so every
    kernel is evaluated there, with ``γ`` kept on the device (the same value: the skipped
    kernels are exactly the identity).
    """

    @staticmethod
    def forward(  # noqa: D102
        ctx, d: torch.Tensor, gamma: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        k_sum = torch.zeros_like(d)
        g_sum = torch.zeros_like(d) if ctx.needs_input_grad[0] else None
        tmp = torch.empty_like(d)
        if host_reads_are_free(d.device):
            finfo = torch.finfo(d.dtype)
            # exp(-x) == 0 beyond this (the smallest subnormal; never formed as a product,
            # which is 0 where subnormals are flushed: training/denormals.py)
            underflow = -math.log(finfo.tiny) - math.log(finfo.eps) + 1.0
            n = d.shape[0]
            off = d[_upper_triangle(n, d.device)]
            d_min = off.min().item() if off.numel() else 0.0
            kernels = []
            for g in gamma.tolist():
                if g * d_min > underflow:
                    k_sum.diagonal().add_(1.0)
                else:
                    kernels.append(g)
        else:
            kernels = list(gamma.to(d.dtype).unbind())  # 0-dim device tensors: no host read
        for g in kernels:
            torch.mul(d, -g, out=tmp).exp_()
            k_sum += tmp
            if g_sum is not None:
                if isinstance(g, float):
                    g_sum.add_(tmp, alpha=g)
                else:
                    g_sum.addcmul_(tmp, g)
        if g_sum is not None:
            ctx.save_for_backward(g_sum.mul_(w).neg_())
        return (k_sum * w).sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: D102
        (grad_d,) = ctx.saved_tensors
        return grad_out * grad_d, None, None


def weighted_kernel_sum(d: torch.Tensor, sigma2: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``Σ_ij W_ij Σ_k exp(-D_ij / (2 σ²_k))`` (differentiable in ``d`` only), a scalar.

    No host synchronisation on an accelerator (see :class:`_WeightedKernelSum`).

    Args:
        d: squared distances ``[n, n]`` with a zero diagonal.
        sigma2: σ² values ``[num_kernels]``.
        w: weights ``[n, n]`` (see :func:`mmd_weights`).
    """
    return _WeightedKernelSum.apply(d, (0.5 / sigma2).detach(), w)


class MultiKernelMMD(nn.Module):
    r"""Multi-kernel Gaussian MMD² between source and target features.

    From Gretton et al. 2012 (JMLR 13, "A Kernel Two-Sample Test") as used in Eq. 3 of
    Ciprijanovic et al. 2020 (arXiv:2011.03591):

    .. math::
        \mathrm{MMD}^2(S, T) = \mathbb{E}[k(s, s')] + \mathbb{E}[k(t, t')] - 2\,\mathbb{E}[k(s, t)],
        \quad k(x, y) = \sum_\sigma \exp\!\left(-\frac{\|x - y\|^2}{2\sigma^2}\right)

    Args:
        bandwidths: ``"family"`` (data-driven geometric family) or ``"authors"`` (19 fixed σ²).
        base: ``"median"`` or ``"mean"`` pairwise distance (family only).
        mul: ratio between consecutive σ (family only).
        num: number of σ values (family only).
        estimator: ``"unbiased"`` (U-statistic, Eq. 3) or ``"biased"`` (V-statistic).

    Inputs:
        - f_s: source features ``[m, d]``
        - f_t: target features ``[n, d]`` (``n`` may differ from ``m``)

    Shapes:
        - Output: scalar, in the dtype of ``f_s`` (distances in float64, kernels in float32 or
          the features' dtype if wider).
    """

    def __init__(
        self,
        bandwidths: str = "family",
        base: str = "median",
        mul: float = 2.0,
        num: int = 5,
        estimator: str = "unbiased",
    ):
        super().__init__()
        if bandwidths not in BANDWIDTH_MODES:
            raise ValueError(f"unknown mmd bandwidths {bandwidths!r}; valid: family, authors")
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown mmd estimator {estimator!r}; valid: unbiased, biased")
        if base not in BASES:
            raise ValueError(f"unknown mmd base {base!r}; valid: median, mean")
        self.bandwidths, self.base, self.mul, self.num = bandwidths, base, float(mul), int(num)
        self.estimator = estimator
        self.register_buffer(
            "authors_sigma2", torch.tensor(AUTHORS_SIGMA2, dtype=torch.float64), persistent=False
        )

    def sigma2(self, sq_dists: torch.Tensor) -> torch.Tensor:
        """The σ² values used for this batch (float64 ``[num_kernels]``)."""
        if self.bandwidths == "authors":
            return self.authors_sigma2.to(sq_dists.device)
        return family_sigma2(sq_dists, self.base, self.mul, self.num)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """MMD² (scalar) between ``f_s [m, d]`` and ``f_t [n, d]``."""
        d64 = pairwise_sq_dists(torch.cat([f_s, f_t], dim=0))
        sigma2 = self.sigma2(d64)
        # distances are exact in float64; the kernels need only float32's relative precision
        d = d64.to(torch.promote_types(f_s.dtype, torch.float32))
        w = mmd_weights(f_s.shape[0], f_t.shape[0], self.estimator, d.dtype, d.device)
        return weighted_kernel_sum(d, sigma2, w).to(f_s.dtype)

    def extra_repr(self) -> str:  # noqa: D102
        if self.bandwidths == "authors":
            return f"bandwidths=authors, estimator={self.estimator}"
        return (
            f"bandwidths=family, base={self.base}, mul={self.mul}, num={self.num}, "
            f"estimator={self.estimator}"
        )
