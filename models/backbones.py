"""Feature extractors chosen by name: ``deepmerge`` and ``resnet18`` for 3×75×75 images.

A backbone maps images ``[B, 3, 75, 75]`` to flat features ``[B, feature_dim]``; the classifier
head (:mod:`models.heads`) is separate, so a transfer loss can act on features (timm's
``forward = head(features(x))`` split).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import resnet18

__all__ = [
    "BACKBONES",
    "Backbone",
    "DeepMergeBackbone",
    "ResNet18Backbone",
    "UnknownNameError",
    "backbone_names",
    "create_backbone",
    "register_backbone",
]


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")

    def __str__(self) -> str:
        return str(self.args[0])


class Backbone(nn.Module):
    """Base class: ``features(x) -> [B, feature_dim]``; ``forward`` is ``features``."""

    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return flat features ``[B, feature_dim]`` for images ``[B, C, H, W]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`features`."""
        return self.features(x)


BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Register a backbone builder under ``name`` (decorator)."""

    def decorator(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        BACKBONES[name] = builder
        return builder

    return decorator


def backbone_names() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(BACKBONES)


def create_backbone(name: str, **kwargs) -> Backbone:
    """Build the backbone registered as ``name``.

    Args:
        name: a registered name (``deepmerge``, ``resnet18``).
        **kwargs: passed to the builder.

    Raises:
        UnknownNameError: ``name`` is not registered (a ``KeyError`` and a ``ValueError``).
    """
    if name not in BACKBONES:
        raise UnknownNameError("backbone", name, backbone_names())
    return BACKBONES[name](**kwargs)


@register_backbone("deepmerge")
class DeepMergeBackbone(Backbone):
    """Convolutional part of DeepMerge (Ciprijanovic et al. 2020, Astron. Comput. 32, 100390).

    Conv(3→8, 5×5, pad 2)–BN–ReLU–MaxPool2, Conv(8→16, 3×3, pad 1)–BN–ReLU–MaxPool2,
    Conv(16→32, 3×3, pad 1)–BN–ReLU–MaxPool2, flatten. No dropout (as in the authors' code).

    Shapes:
        - Inputs: ``[B, in_channels, 75, 75]``
        - Outputs: ``[B, 2592]`` (= 32 × 9 × 9)
    """

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, kernel_size=5, padding=2),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.feature_dim = 32 * 9 * 9

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the flattened conv features ``[B, 2592]``."""
        return self.body(x)


@register_backbone("resnet18")
class ResNet18Backbone(Backbone):
    """torchvision ResNet18 (random init, nothing downloaded) with ``fc`` removed.

    Global average pooling makes it work at 75×75 (layer4 is 3×3 there).

    Shapes:
        - Inputs: ``[B, 3, 75, 75]``
        - Outputs: ``[B, 512]``
    """

    def __init__(self):
        super().__init__()
        net = resnet18(weights=None)
        net.fc = nn.Identity()
        self.net = net
        self.feature_dim = 512

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features ``[B, 512]``."""
        return self.net(x)
