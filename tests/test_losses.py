import math

import pytest
import torch

from models import UnknownNameError
from training.config import TrainConfig, default_config
from training.kernel_mmd import AUTHORS_SIGMA2, MultiKernelMMD, pairwise_sq_dists
from training.methods.dann import DomainAdversarialLoss, ganin_coeff
from training.methods.none import NoTransferLoss
from training.registry import create_transfer_loss

torch.set_num_threads(2)


def reference_mmd(xs, xt, sigma2, estimator):
    """Eq. 3 by a float64 double loop."""
    xs, xt = xs.double().tolist(), xt.double().tolist()

    def k(a, b):
        d = sum((u - v) ** 2 for u, v in zip(a, b, strict=True))
        return sum(math.exp(-d / (2 * s2)) for s2 in sigma2)

    m, n = len(xs), len(xt)
    unb = estimator == "unbiased"
    ss = sum(k(xs[i], xs[j]) for i in range(m) for j in range(m) if not (unb and i == j))
    tt = sum(k(xt[i], xt[j]) for i in range(n) for j in range(n) if not (unb and i == j))
    st = sum(k(a, b) for a in xs for b in xt)
    if unb:
        return ss / (m * (m - 1)) + tt / (n * (n - 1)) - 2 * st / (m * n)
    return ss / m**2 + tt / n**2 - 2 * st / (m * n)


def reference_family(xs, xt, base, mul, num):
    z = torch.cat([xs, xt]).double()
    d = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")
    off = d[~torch.eye(len(z), dtype=torch.bool)]
    b = off.median().item() if base == "median" else off.mean().item()
    return [(b * mul**k) ** 2 for k in range(-(num // 2), num - num // 2)]


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("bandwidths", ["family", "authors"])
@pytest.mark.parametrize("scale", [1.0, 100.0])
@pytest.mark.parametrize("base", ["median", "mean"])
def test_mmd_matches_double_loop(estimator, bandwidths, scale, base):
    g = torch.Generator().manual_seed(3)
    dim = 12
    xs = torch.randn(7, dim, generator=g) * scale + 3.0 * scale  # large common offset
    xt = (torch.randn(5, dim, generator=g) + 0.5) * scale + 3.0 * scale  # n_s != n_t
    if bandwidths == "authors" and scale != 1.0:
        xs, xt = xs / scale * 0.05, xt / scale * 0.05  # keep the tiny σ² informative
        xs, xt = xs + 40.0, xt + 40.0  # large norm, small distances: the cdist trap
    mmd = MultiKernelMMD(bandwidths=bandwidths, base=base, mul=2.0, num=5, estimator=estimator)
    sigma2 = AUTHORS_SIGMA2 if bandwidths == "authors" else reference_family(xs, xt, base, 2.0, 5)
    got = mmd(xs, xt).item()
    want = reference_mmd(xs, xt, sigma2, estimator)
    assert got == pytest.approx(want, abs=1e-5, rel=1e-5)


def test_pairwise_sq_dists_exact_for_large_norms():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20, 300, generator=g) * 100 + 1e4
    d = pairwise_sq_dists(z)
    want = ((z.double()[:, None] - z.double()[None]) ** 2).sum(-1)
    assert torch.all(d.diagonal() == 0) and torch.all(d >= 0)
    torch.testing.assert_close(d, want, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("bandwidths", ["family", "authors"])
def test_mmd_identical_samples_is_zero(bandwidths):
    g = torch.Generator().manual_seed(1)
    scale = 100.0 if bandwidths == "family" else 1.0  # the authors' σ² suit unit-scale features
    x = torch.randn(64, 32, generator=g) * scale
    biased = MultiKernelMMD(bandwidths=bandwidths, estimator="biased")
    assert abs(biased(x, x.clone()).item()) < 1e-6
    # unbiased: the very same sample twice is slightly negative (its cross term keeps the
    # k(x_i, x_i) pairs); an independent draw of the same law is ≈ 0, small next to a shift
    unbiased = MultiKernelMMD(bandwidths=bandwidths, estimator="unbiased")
    assert unbiased(x, x.clone()).item() <= 1e-6
    x2 = torch.randn(64, 32, generator=g) * scale
    other_iid = unbiased(x, x2).item()
    shifted = unbiased(x, x2 + 3.0 * scale).item()
    assert shifted > 0.1 and abs(other_iid) < 0.1 * shifted


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_mmd_shifted_distributions_positive_and_differentiable(estimator):
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(32, 16, generator=g).requires_grad_(True)
    xt = torch.randn(40, 16, generator=g) + 1.0
    val = MultiKernelMMD(estimator=estimator)(xs, xt)
    assert val.item() > 0.05 and val.dtype == torch.float32
    val.backward()
    assert torch.isfinite(xs.grad).all() and xs.grad.abs().sum() > 0


def test_unbiased_needs_two_samples():
    with pytest.raises(ValueError, match="2 samples"):
        MultiKernelMMD()(torch.randn(1, 3), torch.randn(4, 3))


def test_none_loss_is_zero_scalar():
    f = torch.randn(3, 5, dtype=torch.float64)
    out = NoTransferLoss()(f, f)
    assert out.dim() == 0 and out.item() == 0 and out.dtype == torch.float64


def test_ganin_schedule():
    assert ganin_coeff(0.0) == 0.0
    assert ganin_coeff(1.0, coeff=1.0, gamma=10.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    values = [ganin_coeff(p / 20, coeff=0.7) for p in range(21)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < 0.7


def test_dann_progress_and_constant_schedule():
    loss = DomainAdversarialLoss(8, schedule="ganin", coeff=2.0, gamma=10.0)
    assert loss.grl_coeff == 0.0
    loss.set_progress(1.5)  # clamped
    assert loss.grl_coeff == pytest.approx(ganin_coeff(1.0, 2.0, 10.0))
    const = DomainAdversarialLoss(8, schedule="constant", coeff=0.3)
    const.set_progress(0.0)
    assert const.grl_coeff == 0.3


def test_dann_reverses_feature_gradient():
    torch.manual_seed(0)
    loss = DomainAdversarialLoss(6, schedule="constant", coeff=0.5, dropout=0.0)
    fs = torch.randn(4, 6, requires_grad=True)
    ft = torch.randn(3, 6)
    loss(fs, ft).backward()
    # the same loss without reversal: gradient should be -1/0.5 = -2 times ours
    fs2 = fs.detach().clone().requires_grad_(True)
    z = torch.cat([fs2, ft])
    logits = loss.domain_classifier(z).squeeze(1)
    labels = torch.cat([torch.ones(4), torch.zeros(3)])
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    torch.testing.assert_close(fs.grad, -0.5 * fs2.grad)
    assert 0.0 <= loss.last_domain_accuracy.item() <= 1.0


def test_create_transfer_loss_unknown_method_lists_valid():
    cfg = default_config("none", "deepmerge")
    object.__setattr__(cfg, "method", "nosuch")  # bypass validation to hit the registry
    with pytest.raises(UnknownNameError, match="none.*mmd.*dann"):
        create_transfer_loss(cfg, 10)


def test_create_transfer_loss_reads_config():
    cfg = TrainConfig.from_dict(
        {"method": "mmd", "mmd_bandwidths": "authors", "mmd_estimator": "biased"}
    )
    loss = create_transfer_loss(cfg, 10)
    assert loss.mmd.bandwidths == "authors" and loss.mmd.estimator == "biased"


def test_pairwise_sq_dists_gradient():
    z = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pairwise_sq_dists, (z,))


def test_weighted_kernel_sum_gradient():
    from training.kernel_mmd import weighted_kernel_sum

    d = (torch.rand(5, 5, dtype=torch.float64) * 3).requires_grad_(True)
    sigma2 = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    w = torch.randn(5, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: weighted_kernel_sum(x, sigma2, w), (d,))
    want = sum((torch.exp(-d / (2 * s)) * w).sum() for s in sigma2.tolist())
    torch.testing.assert_close(weighted_kernel_sum(d, sigma2, w), want)
