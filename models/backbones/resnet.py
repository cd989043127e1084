"""ResNet18 (He et al. 2016; torchvision, random init) with the authors' bottleneck, and its spec.

torchvision is imported when a ResNet18 is built, not when the spec is registered, so that the
search problems can be listed without it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.base import Backbone
from models.heads import ClassifierHead
from models.registry import BackboneSpec, Hyper, register_backbone

__all__ = ["SPEC", "ResNet18Backbone"]


class ResNet18Backbone(Backbone):
    """torchvision ResNet18 (random init, nothing downloaded) with ``fc`` removed.

    Global average pooling makes it work at 75×75 (layer4 is 3×3 there).

    Shapes:
        - Inputs: ``[B, 3, 75, 75]``
        - Outputs: ``[B, 512]``
    """

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.fc = nn.Identity()
        self.net = net
        self.feature_dim = 512

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features ``[B, 512]``."""
        return self.net(x)


def build_head(feature_dim: int, config: Any) -> ClassifierHead:
    """A plain ``Linear(512 → bottleneck_dim)`` bottleneck, then FC 2.

    As the authors' ``ResNetFc`` with ``use_bottleneck=True, new_cls=True``: the transfer loss
    sees the bottleneck output (no BN/ReLU in the bottleneck).
    """
    return ClassifierHead(feature_dim, bottleneck_dim=config.bottleneck_dim)


SPEC = register_backbone(BackboneSpec(
    name="resnet18", problem_name="resnet", label="ResNet18",
    build=lambda config: ResNet18Backbone(), build_head=build_head, feature_dim=512, order=10,
    hyperparameters=(
        Hyper("batch_size", 64, [16, 32, 64, 128]),
        Hyper("epochs", 30),
        Hyper("lr", 1e-3),
        Hyper("bottleneck_dim", 256, rule=">= 1", doc="width of the Linear bottleneck"),
    ),
))
