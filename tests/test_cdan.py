"""CDAN (``training/methods/cdan.py``): multilinear map, reversal, CDAN+E weights, registration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from problems import get_problem
from training.config import default_config
from training.methods.cdan import ConditionalAdversarialLoss, certainty_weights, multilinear_map
from training.methods.dann import ganin_coeff
from training.registry import create_transfer_loss, get_method


def inputs(seed=0, m=5, n=4, d=3, c=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(m, d, generator=g).requires_grad_(True),
            torch.randn(n, d, generator=g).requires_grad_(True),
            torch.randn(m, c, generator=g).requires_grad_(True),
            torch.randn(n, c, generator=g).requires_grad_(True))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def bce_with_logits(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z) - labels * z


def test_multilinear_map_shape_and_values():
    rng = np.random.default_rng(0)
    f, g = rng.normal(size=(6, 4)), softmax(rng.normal(size=(6, 3)))
    h = multilinear_map(torch.tensor(f), torch.tensor(g))
    assert h.shape == (6, 4 * 3)
    np.testing.assert_allclose(h.numpy(), np.einsum("bi,bj->bij", f, g).reshape(6, 12),
                               rtol=1e-12)
    assert h[2, 1 * 3 + 2] == pytest.approx(f[2, 1] * g[2, 2])  # entry i·C + c = f_i g_c


def test_feature_gradient_is_reversed_and_scaled():
    torch.manual_seed(0)
    loss = ConditionalAdversarialLoss(3, entropy=False, schedule="constant", coeff=0.5,
                                      dropout=0.0)
    f_s, f_t, logits_s, logits_t = inputs()
    loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t).backward()
    # the same loss without reversal: the feature gradient is -1/0.5 = -2 times ours
    plain_s, plain_t = (x.detach().clone().requires_grad_(True) for x in (f_s, f_t))
    g = F.softmax(torch.cat([logits_s, logits_t]), dim=1).detach()
    d = loss.domain_classifier(multilinear_map(torch.cat([plain_s, plain_t]), g)).squeeze(1)
    labels = torch.cat([torch.ones(5), torch.zeros(4)])
    F.binary_cross_entropy_with_logits(d, labels).backward()
    torch.testing.assert_close(f_s.grad, -0.5 * plain_s.grad)
    torch.testing.assert_close(f_t.grad, -0.5 * plain_t.grad)
    assert f_s.grad.abs().sum() > 0
    assert logits_s.grad is None and logits_t.grad is None  # the conditioning g is detached
    assert 0.0 <= loss.last_domain_accuracy.item() <= 1.0


def test_entropy_weights_match_numpy():
    rng = np.random.default_rng(1)
    g = softmax(rng.normal(scale=2.0, size=(7, 2)))
    w = 1.0 + np.exp((g * np.log(g)).sum(axis=1))  # 1 + exp(-H)
    want = np.concatenate([w[:4] / w[:4].sum(), w[4:] / w[4:].sum()])
    got = certainty_weights(torch.tensor(g), 4).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[:4].sum() == pytest.approx(1.0) and got[4:].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("entropy", [True, False])
def test_loss_value_matches_numpy(entropy):
    torch.manual_seed(1)
    loss = ConditionalAdversarialLoss(3, entropy=entropy, dropout=0.0).eval()
    f_s, f_t, logits_s, logits_t = inputs(2)
    got = loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t).item()
    g = softmax(torch.cat([logits_s, logits_t]).detach().double().numpy())
    h = np.einsum("bi,bj->bij", torch.cat([f_s, f_t]).detach().double().numpy(), g)
    with torch.no_grad():
        d = loss.domain_classifier(torch.tensor(h.reshape(9, 6), dtype=torch.float32))
    per_row = bce_with_logits(d.squeeze(1).double().numpy(), np.r_[np.ones(5), np.zeros(4)])
    if entropy:
        w = 1.0 + np.exp((g * np.log(g)).sum(axis=1))
        want = ((w[:5] / w[:5].sum()) @ per_row[:5] + (w[5:] / w[5:].sum()) @ per_row[5:]) / 2
    else:
        want = per_row.mean()
    assert got == pytest.approx(want, rel=1e-5)


def test_schedule_and_wrong_class_count():
    loss = ConditionalAdversarialLoss(4, schedule="ganin", coeff=1.0, gamma=10.0)
    assert loss.grl_coeff == 0.0
    loss.set_progress(0.3)
    assert loss.grl_coeff == pytest.approx(ganin_coeff(0.3))
    f_s, f_t, _, _ = inputs(d=4)
    with pytest.raises(ValueError, match="2 classes"):
        loss(f_s, f_t, logits_s=torch.randn(5, 3), logits_t=torch.randn(4, 3))


def test_registered_for_both_backbones():
    spec = get_method("cdan")
    assert spec.label == "CDAN" and spec.needs_target
    config = default_config("cdan", "deepmerge")
    assert (config.lambda_tl, config.cdan_entropy, config.grl_schedule) == (1.0, 1, "ganin")
    loss = create_transfer_loss(config, 2592)
    assert loss.needs_outputs and loss.entropy
    assert loss.domain_classifier.net[0].in_features == 2592 * 2
    (group,) = loss.parameter_groups(1e-3)
    assert group["lr"] == pytest.approx(1e-3 * config.dc_lr_mult)
    assert not create_transfer_loss(config.replace(cdan_entropy=0), 8).entropy
    for backbone in ("deepmerge", "resnet"):
        names = set(get_problem(f"cdan_{backbone}").hyperparameter_names)
        assert {"lambda_tl", "cdan_entropy", "grl_coeff", "dc_lr_mult"} <= names
