"""DeepMerge (Ciprijanovic et al. 2020, Astron. Comput. 32, 100390) and its spec."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.base import Backbone
from models.heads import ClassifierHead
from models.registry import BackboneSpec, Hyper, register_backbone

__all__ = ["SPEC", "DeepMergeBackbone"]


class DeepMergeBackbone(Backbone):
    """Convolutional part of DeepMerge.

    Conv(3→8, 5×5, pad 2)–BN–ReLU–MaxPool2, Conv(8→16, 3×3, pad 1)–BN–ReLU–MaxPool2,
    Conv(16→32, 3×3, pad 1)–BN–ReLU–MaxPool2, flatten. No dropout (as in the authors' code).

    Each ReLU is applied after its max-pool: ``maxpool(relu(x)) == relu(maxpool(x))`` (both
    are monotone), and the gradients are the same too (a window whose maximum is ≤ 0 gets no
    gradient either way), so this is the authors' network computed with the ReLU on a
    quarter of the values. Layer indices (and so checkpoints) are those of the conv/BN order.

    Shapes:
        - Inputs: ``[B, in_channels, 75, 75]``
        - Outputs: ``[B, 2592]`` (= 32 × 9 × 9)
    """

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, kernel_size=5, padding=2),
            nn.BatchNorm2d(8),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.BatchNorm2d(16),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.feature_dim = 32 * 9 * 9

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the flattened conv features ``[B, 2592]``."""
        return self.body(x)


def build_head(feature_dim: int, config: Any) -> ClassifierHead:
    """The authors' head: FC 64–ReLU–FC 32–ReLU–FC 2 on the 2592 conv features, no bottleneck.

    The transfer loss sees the 2592 features (their ``DeepMerge.forward`` returns
    ``x.view(-1, 32*9*9)`` as the features fed to MMD / the domain classifier).
    """
    return ClassifierHead(feature_dim, hidden=(64, 32))


SPEC = register_backbone(BackboneSpec(
    name="deepmerge", problem_name="deepmerge", label="DeepMerge",
    build=lambda config: DeepMergeBackbone(), build_head=build_head, feature_dim=2592, order=0,
    fp32_channels_last=True,  # x1.13-1.24, AVX2 EPYC: benchmarks/results/speed.md "Fast trials"
    hyperparameters=(
        Hyper("batch_size", 128, [32, 64, 128, 256]),
        Hyper("epochs", 30),  # one cycle; early stopping ends no-DA around epoch 22
        Hyper("lr", 1e-3),  # the authors' Adam learning rate
    ),
))
