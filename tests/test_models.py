import pytest
import torch

from models import (
    DomainClassifier,
    UnknownNameError,
    backbone_names,
    create_classifier,
    get_backbone,
    grad_reverse,
)
from training.config import default_config
from training.registry import create_transfer_loss, method_names

torch.set_num_threads(2)

#: The feature sizes of the built-in backbones (backbone, transfer); a new backbone is checked
#: against its own spec (docs/EXTENDING.md: no list here to edit).
EXPECTED_DIMS = {"deepmerge": (2592, 2592), "resnet18": (512, 256)}


def test_registry_lists_both_backbones():
    names = backbone_names()
    assert {"deepmerge", "resnet18"} <= set(names)
    assert names.index("deepmerge") < names.index("resnet18")
    assert get_backbone("resnet") is get_backbone("resnet18")


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        get_backbone("resnet19")
    msg = str(info.value)
    assert "resnet19" in msg and "deepmerge" in msg and "resnet18" in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", backbone_names())
def test_backbone_feature_shapes(name):
    spec = get_backbone(name)
    bb = spec.build(default_config("none", name)).eval()
    x = torch.randn(2, 3, 75, 75)
    assert bb.feature_dim == spec.feature_dim == EXPECTED_DIMS.get(name, (spec.feature_dim,))[0]
    assert bb.features(x).shape == (2, bb.feature_dim)
    assert torch.equal(bb(x), bb.features(x))


@pytest.mark.parametrize("method", method_names())
@pytest.mark.parametrize("backbone", backbone_names())
def test_every_backbone_and_method_trains_one_step(backbone, method):
    torch.manual_seed(0)
    cfg = default_config(method, backbone)
    model = create_classifier(cfg)
    if backbone in EXPECTED_DIMS:
        assert model.feature_dim == EXPECTED_DIMS[backbone][1]
    loss_fn = create_transfer_loss(cfg, model.feature_dim)
    loss_fn.set_progress(0.5)
    groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
    groups += loss_fn.parameter_groups(cfg.lr)
    opt = torch.optim.Adam(groups)
    xs, xt = torch.randn(4, 3, 75, 75), torch.randn(4, 3, 75, 75)
    ys = torch.tensor([0, 1, 0, 1])
    feats, logits = model.forward_with_features(torch.cat([xs, xt]))
    assert logits.shape == (8, 2) and feats.shape == (8, model.feature_dim)
    assert model(xs).shape == (4, 2) and model.features(xs).shape == (4, model.feature_dim)
    if loss_fn.needs_outputs:  # the loop's protocol (training.transfer)
        loss_tl = loss_fn(feats[:4], feats[4:], logits_s=logits[:4], logits_t=logits[4:], y_s=ys)
    else:
        loss_tl = loss_fn(feats[:4], feats[4:])
    assert loss_tl.dim() == 0 and torch.isfinite(loss_tl)
    loss = loss_fn.combine(torch.nn.functional.cross_entropy(logits[:4], ys), loss_tl,
                           cfg.lambda_tl)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if method == "dann":
        assert opt.param_groups[1]["lr"] == pytest.approx(cfg.lr * cfg.dc_lr_mult)
        dc = loss_fn.domain_classifier.net[0].weight
        assert dc.grad is not None and dc.grad.abs().sum() > 0


def test_domain_classifier_shape():
    dc = DomainClassifier(16)
    assert dc(torch.randn(5, 16)).shape == (5, 1)


@pytest.mark.parametrize("coeff", [1.0, 0.3, 2.5])
def test_gradient_reversal_negates_and_scales(coeff):
    x = torch.randn(6, 4, requires_grad=True)
    w = torch.randn(6, 4)
    y = grad_reverse(x, coeff)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.equal(x.grad, -coeff * w)
