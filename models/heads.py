"""Classifier heads, the full classifier and the domain classifier.

Each backbone's spec (``models/backbones/``) says which head it gets and so what the transfer
loss sees (``Classifier.features``), following the authors' code
(github.com/AleksCipri/DeepMergeDomainAdaptation, ``network.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.base import Backbone

__all__ = ["Classifier", "ClassifierHead", "DomainClassifier", "create_classifier"]


class ClassifierHead(nn.Module):
    """Optional bottleneck, then an MLP ending in ``num_classes`` logits.

    ``embed(f)`` gives the features a transfer loss acts on (the bottleneck output, or ``f``
    itself without a bottleneck); ``classify(z)`` gives logits; ``forward = classify ∘ embed``.

    Args:
        feature_dim: size of the backbone features.
        hidden: widths of the hidden ``Linear–ReLU`` layers after the bottleneck
            (DeepMerge: ``(64, 32)``).
        bottleneck_dim: width of a plain ``Linear`` bottleneck, or ``None`` for none.
        num_classes: number of logits. Default 2.

    Shapes:
        - Inputs: ``[B, feature_dim]``
        - Outputs: ``[B, num_classes]``; ``embed``: ``[B, transfer_dim]``
    """

    def __init__(
        self,
        feature_dim: int,
        hidden: Sequence[int] = (),
        bottleneck_dim: int | None = None,
        num_classes: int = 2,
    ):
        super().__init__()
        if bottleneck_dim is None:
            self.bottleneck: nn.Module = nn.Identity()
            self.transfer_dim = feature_dim
        else:
            lin = nn.Linear(feature_dim, bottleneck_dim)
            nn.init.normal_(lin.weight, 0.0, 0.005)  # authors' ResNetFc init
            nn.init.zeros_(lin.bias)
            self.bottleneck = lin
            self.transfer_dim = bottleneck_dim
        layers: list[nn.Module] = []
        width = self.transfer_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*layers)
        self.num_classes = num_classes

    def embed(self, f: torch.Tensor) -> torch.Tensor:
        """Features for the transfer loss, ``[B, transfer_dim]``."""
        return self.bottleneck(f)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` from embedded features."""
        return self.classifier(z)

    def penultimate(self, z: torch.Tensor) -> torch.Tensor:
        """What the last ``Linear`` reads, ``[B, penultimate_dim]``, from embedded features.

        DeepMerge: the 32 outputs of the last hidden ``Linear–ReLU``; without hidden layers
        (ResNet18) the embedded features themselves (the bottleneck), so
        ``classify(z) == classifier[-1](penultimate(z))``.
        """
        return self.classifier[:-1](z)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` from backbone features."""
        return self.classify(self.embed(f))


class Classifier(nn.Module):
    """Backbone + head. ``forward(x)`` gives logits; ``features(x)`` what the transfer loss sees.

    Args:
        backbone: a :class:`~models.backbones.Backbone`.
        head: a :class:`ClassifierHead` built for ``backbone.feature_dim``.

    Attributes:
        feature_dim: size of ``features(x)`` (pass it to ``create_transfer_loss``); for
            ``resnet18`` this is the bottleneck width, not the backbone's 512.
        transfer_dim: alias of ``feature_dim``.

    ``penultimate(x)`` is the input of the head's last ``Linear`` (DeepMerge: 32 values;
    ResNet18: the bottleneck, ``features(x)``): what :mod:`apply.ood` measures distances on.
    """

    def __init__(self, backbone: Backbone, head: ClassifierHead):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_dim = self.transfer_dim = head.transfer_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Transfer-loss features ``[B, feature_dim]``."""
        return self.head.embed(self.backbone.features(x))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer ``[B, penultimate_dim]``: the input of the last ``Linear``."""
        return self.head.penultimate(self.features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass giving ``(features [B, feature_dim], logits [B, num_classes])``."""
        z = self.features(x)
        return z, self.head.classify(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``."""
        return self.head.classify(self.features(x))


def create_classifier(config: Any) -> Classifier:
    """The backbone and head that ``config.backbone``'s spec builds (with ``config``'s fields)."""
    from models.registry import get_backbone

    spec = get_backbone(config.backbone)
    backbone = spec.build(config)
    return Classifier(backbone, spec.build_head(backbone.feature_dim, config))


class DomainClassifier(nn.Module):
    """Domain discriminator of DANN (Ganin et al. 2016), as in the authors' ``AdversarialNetwork``.

    ``Linear(in_dim→hidden)–ReLU–Dropout–Linear(hidden→hidden)–ReLU–Dropout–Linear(hidden→1)``,
    returning logits (apply the sigmoid in the loss). Init as the authors: hidden weights
    N(0, 0.01), output weights N(0, 0.3), zero biases.

    Args:
        in_dim: feature size.
        hidden: hidden width. Default 1024.
        dropout: dropout probability. Default 0.5.

    Shapes:
        - Inputs: ``[B, in_dim]``
        - Outputs: ``[B, 1]`` logits (source = 1, target = 0 in the DANN loss)
    """

    def __init__(self, in_dim: int, hidden: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        for layer, std in ((self.net[0], 0.01), (self.net[3], 0.01), (self.net[6], 0.3)):
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Domain logits ``[B, 1]``."""
        return self.net(x)
