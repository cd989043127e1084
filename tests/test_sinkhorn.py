"""SIDDA (``training/methods/sidda.py``): Sinkhorn value, blur, learned weights, registration."""

from __future__ import annotations

import geomloss
import numpy as np
import pytest
import torch

from problems import get_problem
from training.config import default_config
from training.methods.sidda import BLUR_FLOOR, ETA_MIN, SinkhornLoss, sinkhorn_divergence
from training.registry import create_transfer_loss, get_method


def clouds(seed=0, m=24, n=18, d=5, shift=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, d, generator=g), torch.randn(n, d, generator=g) * 1.5 + shift


@pytest.mark.parametrize("blur", [0.05, 0.3, 1.0])
def test_value_is_geomloss_at_a_fixed_blur(blur):
    x, y = clouds()
    want = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.9)(x, y)
    got = sinkhorn_divergence(x, y, blur, scaling=0.9)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert got.item() > 0


def test_module_blur_from_the_batch_and_its_value():
    x, y = clouds(1)
    loss = SinkhornLoss(blur_fraction=0.05, scaling=0.9)
    got = loss(x, y)
    farthest = np.sqrt(((x.numpy()[:, None] - y.numpy()[None]) ** 2).sum(-1)).max()
    assert loss.last_blur == pytest.approx(0.05 * farthest, rel=1e-5)
    # geomloss's own diameter estimate: the same number without a second device read
    want = geomloss.SamplesLoss("sinkhorn", p=2, blur=loss.last_blur, scaling=0.9)(x, y)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    tiny = SinkhornLoss()
    tiny(x * 1e-4, y * 1e-4)
    assert tiny.last_blur == BLUR_FLOOR


def test_symmetric_and_zero_for_identical_samples():
    x, y = clouds(2)
    loss = SinkhornLoss()
    assert loss(x, y).item() == pytest.approx(loss(y, x).item(), rel=1e-4)
    assert abs(loss(x, x.clone()).item()) < 1e-5 * loss(x, y).item()
    assert loss(x, x + 0.5).item() > 0


def test_gradients_reach_both_feature_batches():
    x, y = clouds(3)
    x.requires_grad_(True)
    y.requires_grad_(True)
    SinkhornLoss()(x, y).backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_learned_weights_combine_gradient_and_clamps():
    loss = SinkhornLoss()
    with torch.no_grad():
        loss.eta_cl.fill_(2.0)
        loss.eta_tl.fill_(0.5)
    loss_cl, loss_tl = torch.tensor(0.8, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    total = loss.combine(loss_cl, loss_tl, 1.0)
    assert total.item() == pytest.approx(0.8 / 8 + 3.0 / 0.5 + np.log(2.0 * 0.5))
    total.backward()
    assert loss.eta_cl.grad.item() == pytest.approx(-0.8 / 2.0**3 + 1 / 2.0)
    assert loss.eta_tl.grad.item() == pytest.approx(-3.0 / 0.5**3 + 1 / 0.5)
    assert loss_tl.grad.item() == pytest.approx(1 / (2 * 0.5**2))
    with torch.no_grad():
        loss.eta_cl.fill_(-1.0)
        loss.eta_tl.fill_(0.0)
    loss.combine(loss_cl, loss_tl, 1.0)
    assert loss.eta_cl.item() == pytest.approx(ETA_MIN)
    assert loss.eta_tl.item() == pytest.approx(ETA_MIN / 4)
    (group,) = loss.parameter_groups(1e-3)
    assert group["params"] == [loss.eta_cl, loss.eta_tl]
    assert group["lr"] == pytest.approx(1e-2) and group["weight_decay"] == 0.0


def test_the_weights_learn_the_balance():
    """With constant losses the optimum is η² = L: each term's weight becomes 1 / (2 L)."""
    loss = SinkhornLoss()
    optimizer = torch.optim.Adam([p for g in loss.parameter_groups(5e-3) for p in g["params"]],
                                 lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        loss.combine(torch.tensor(0.5), torch.tensor(4.0), 1.0).backward()
        optimizer.step()
    assert loss.eta_cl.item() ** 2 == pytest.approx(0.5, rel=1e-2)
    assert loss.eta_tl.item() ** 2 == pytest.approx(4.0, rel=1e-2)


def test_registered_without_a_lambda_search():
    spec = get_method("sidda")
    assert spec.label == "SIDDA" and spec.needs_target
    config = default_config("sidda", "resnet18")
    assert (config.lambda_tl, config.sinkhorn_blur, config.sinkhorn_scaling) == (1.0, 0.05, 0.9)
    loss = create_transfer_loss(config, 256)
    assert isinstance(loss, SinkhornLoss) and not loss.needs_outputs
    assert loss.lr_mult == config.sidda_lr_mult == 10.0
    for backbone in ("deepmerge", "resnet"):
        assert "lambda_tl" not in get_problem(f"sidda_{backbone}").hyperparameter_names
