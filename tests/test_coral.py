"""Deep CORAL (``training/methods/coral.py``): value, gradient, shapes, registration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from problems import get_problem
from training.config import default_config
from training.methods.coral import CoralLoss, covariance
from training.registry import create_transfer_loss, get_method


def reference_coral(xs: np.ndarray, xt: np.ndarray) -> float:
    """Eq. 1 of Sun & Saenko (2016) with numpy's own covariance, in float64."""
    d = xs.shape[1]
    gap = np.cov(xs, rowvar=False) - np.cov(xt, rowvar=False)
    return float((gap**2).sum() / (4 * d * d))


def test_value_matches_an_independent_formula():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(9, 5)), rng.normal(1.0, 2.0, size=(7, 5))
    got = CoralLoss()(torch.tensor(xs), torch.tensor(xt))
    assert got.dim() == 0
    assert float(got) == pytest.approx(reference_coral(xs, xt), rel=1e-5)
    np.testing.assert_allclose(covariance(torch.tensor(xs)).numpy(), np.cov(xs, rowvar=False),
                               rtol=1e-5)


def test_zero_for_equal_covariances_and_blind_to_means():
    f = torch.randn(16, 4)
    assert float(CoralLoss()(f, f + 3.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(CoralLoss()(f, 2 * f)) > 0


def test_gradient():
    xs = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    xt = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)

    def loss(a, b):
        d = a.shape[1]
        gap = covariance(a) - covariance(b)
        return (gap * gap).sum() / (4 * d * d)

    assert torch.autograd.gradcheck(loss, (xs, xt))
    CoralLoss()(xs.float(), xt.float()).backward()  # the module's float32 path backpropagates


def test_too_few_rows_is_a_clear_error():
    with pytest.raises(ValueError, match=">= 2 rows"):
        CoralLoss()(torch.randn(1, 3), torch.randn(4, 3))


def test_registered_with_its_problems():
    spec = get_method("coral")
    assert spec.label == "CORAL" and spec.needs_target
    config = default_config("coral", "resnet18")
    assert config.lambda_tl == 1.0
    assert isinstance(create_transfer_loss(config, 256), CoralLoss)
    assert "lambda_tl" in get_problem("coral_resnet").hyperparameter_names
    assert "lambda_tl" in get_problem("coral_deepmerge").hyperparameter_names
