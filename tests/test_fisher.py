"""Fisher + entropy (``training/methods/fisher.py``): scatter, entropy, wrapper, registration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from problems import get_problem
from training.config import default_config
from training.methods.dann import DomainAdversarialLoss
from training.methods.fisher import FisherEntropyLoss, fisher_scatter, mean_entropy
from training.methods.mmd import MMDLoss
from training.methods.none import NoTransferLoss
from training.registry import create_transfer_loss, get_method


def reference_scatter(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """tr S_W / m and tr S_B / m written out class by class, in float64."""
    m, mu = len(f), f.mean(axis=0)
    within = between = 0.0
    for k in np.unique(y):
        rows = f[y == k]
        centre = rows.mean(axis=0)
        within += ((rows - centre) ** 2).sum()
        between += len(rows) * ((centre - mu) ** 2).sum()
    return within / m, between / m


def reference_entropy(logits: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return float(-(p * np.log(p)).sum(axis=1).mean())


@pytest.mark.parametrize("num_classes,labels", [(2, [0, 1, 1, 0, 1, 1, 0, 1, 1]),
                                                (3, [0, 2, 2, 0, 2, 0, 2, 2, 0])])  # class 1 absent
def test_scatter_matches_numpy(num_classes, labels):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(9, 5)) + np.arange(5)
    y = np.array(labels)
    within, between = fisher_scatter(torch.tensor(f), torch.tensor(y), num_classes)
    want_w, want_b = reference_scatter(f, y)
    assert float(within) == pytest.approx(want_w, rel=1e-10)
    assert float(between) == pytest.approx(want_b, rel=1e-10)
    total = ((f - f.mean(axis=0)) ** 2).sum(axis=1).mean()  # S_T = S_W + S_B
    assert float(within + between) == pytest.approx(total, rel=1e-10)


def test_entropy_matches_numpy():
    logits = np.random.default_rng(1).normal(scale=3.0, size=(7, 2))
    assert float(mean_entropy(torch.tensor(logits))) == pytest.approx(reference_entropy(logits),
                                                                      rel=1e-10)
    assert float(mean_entropy(torch.zeros(3, 2))) == pytest.approx(np.log(2))
    assert float(mean_entropy(torch.tensor([[50.0, -50.0]]))) == pytest.approx(0.0, abs=1e-6)


def test_scatter_gradient():
    f = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    assert torch.autograd.gradcheck(lambda x: fisher_scatter(x, y, 2), (f,))
    logits = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mean_entropy, (logits,))


def batch(seed=0, m=12, n=10, d=6):
    g = torch.Generator().manual_seed(seed)
    f_s = torch.randn(m, d, generator=g).requires_grad_(True)
    f_t = (torch.randn(n, d, generator=g) + 0.5).requires_grad_(True)
    logits_s = torch.randn(m, 2, generator=g).requires_grad_(True)
    logits_t = torch.randn(n, 2, generator=g).requires_grad_(True)
    y_s = torch.arange(m) % 2
    return f_s, f_t, logits_s, logits_t, y_s


def test_wrapper_keeps_the_base_loss_and_adds_the_terms_unscaled():
    f_s, f_t, logits_s, logits_t, y_s = batch()
    base = MMDLoss()
    loss = FisherEntropyLoss(base, fisher_intra=0.3, fisher_inter=0.2, entropy_weight=0.7)
    assert loss.needs_outputs and not base.needs_outputs
    loss_tl = loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=y_s)
    assert torch.equal(loss_tl, base(f_s, f_t))  # L_TL (train_tl_loss) is MMD's own
    within, between = reference_scatter(f_s.detach().double().numpy(), y_s.numpy())
    entropy = reference_entropy(logits_t.detach().double().numpy())
    loss_cl = torch.tensor(0.9)
    total = loss.combine(loss_cl, loss_tl, 2.0)
    want = 0.9 + 2.0 * loss_tl.item() + 0.3 * within - 0.2 * between + 0.7 * entropy
    assert total.item() == pytest.approx(want, rel=1e-5)
    assert set(loss.last_terms) == {"fisher_within", "fisher_between", "target_entropy"}
    with pytest.raises(RuntimeError, match="forward"):
        loss.combine(loss_cl, loss_tl, 2.0)  # the terms belong to one step


def test_gradients_reach_source_features_and_target_logits_only_through_their_terms():
    f_s, f_t, logits_s, logits_t, y_s = batch(1)
    loss = FisherEntropyLoss(NoTransferLoss(), fisher_intra=1.0, fisher_inter=0.5,
                             entropy_weight=1.0)
    loss_tl = loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=y_s)
    loss.combine(torch.zeros(()), loss_tl, 1.0).backward()
    assert f_s.grad.abs().sum() > 0 and logits_t.grad.abs().sum() > 0
    assert f_t.grad is None and logits_s.grad is None  # Fisher: source; entropy: target


def test_dannfe_keeps_danns_schedule_and_parameters():
    config = default_config("dannfe", "deepmerge")
    loss = create_transfer_loss(config, 16)
    assert isinstance(loss, FisherEntropyLoss) and isinstance(loss.base, DomainAdversarialLoss)
    loss.set_progress(1.0)
    assert loss.base.progress == 1.0
    (group,) = loss.parameter_groups(1e-3)
    assert group["lr"] == pytest.approx(1e-3 * config.dc_lr_mult)
    assert len(group["params"]) == len(list(loss.base.domain_classifier.parameters()))
    f_s, f_t, logits_s, logits_t, y_s = batch(2, d=16)
    loss_tl = loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=y_s)
    loss.combine(torch.zeros(()), loss_tl, config.lambda_tl).backward()
    assert loss.base.domain_classifier.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method,base", [("mmdfe", "mmd"), ("dannfe", "dann")])
def test_registered_with_the_wrapped_methods_fields(method, base):
    spec = get_method(method)
    assert spec.needs_target and "_" not in spec.name
    config, base_config = default_config(method, "deepmerge"), default_config(base, "deepmerge")
    assert (config.fisher_intra, config.fisher_inter, config.entropy_weight) == (1e-3, 1e-4, 0.1)
    assert config.lambda_tl == base_config.lambda_tl and config.patience == base_config.patience
    for backbone in ("deepmerge", "resnet"):
        names = set(get_problem(f"{method}_{backbone}").hyperparameter_names)
        assert {"fisher_intra", "fisher_inter", "entropy_weight"} <= names
        assert set(get_problem(f"{base}_{backbone}").hyperparameter_names) <= names
