r"""Control: AdaBN (Li et al. 2016, arXiv:1603.04779).

"Revisiting Batch Normalization For Practical Domain Adaptation". Training is no-DA's
(source only, ``L = L_CL``). For the *target* splits the trained network's BatchNorm
statistics are re-estimated on the unlabelled target *training* images, all other weights
unchanged: for every BatchNorm layer with pre-normalisation activations ``a``,

.. math::
    \mu_T = \mathbb{E}_{x \in T_{train}}[a(x)], \qquad
    \sigma_T^2 = \mathrm{Var}_{x \in T_{train}}[a(x)],

layer by layer (each layer sees the previous layers already adapted). The source splits are
scored by the unadapted network. Target labels and the target validation/test images are
never read by the adaptation.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from models.registry import Hyper
from training.evaluate import EVAL_BATCH_SIZE
from training.methods.none import NoTransferLoss
from training.registry import MethodSpec, register_method

__all__ = ["SPEC", "adapt_batchnorm"]


def adapt_batchnorm(model: nn.Module, images: torch.Tensor, device: torch.device,
                    batch_size: int = EVAL_BATCH_SIZE) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are those of ``images``.

    Every other layer stays in eval mode (dropout off); each BatchNorm layer's statistics are
    reset and re-accumulated as a cumulative average over batches (``momentum=None``) of
    ``images`` (the unlabelled target training images). ``model`` itself is not changed.

    Raises:
        ValueError: ``model`` has no BatchNorm layer, or ``images`` is empty.
    """
    if len(images) == 0:
        raise ValueError("AdaBN needs at least one target training image")
    adapted = copy.deepcopy(model).eval()
    layers = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise ValueError("AdaBN needs a network with BatchNorm layers; this one has none")
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
        layer.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            adapted.forward_with_features(images[start : start + batch_size].to(device))
    for layer in layers:
        layer.eval()
    return adapted


def _adapt(model: nn.Module, target_train_images: torch.Tensor, device: torch.device):
    return adapt_batchnorm(model, target_train_images, device)


def build(config: Any, feature_dim: int) -> NoTransferLoss:
    """The zero loss (training is no-DA's)."""
    return NoTransferLoss()


SPEC = register_method(MethodSpec(
    name="adabn", label="AdaBN", color="#937860", build=build, needs_target=False, order=26,
    summary="control: no-DA training, BatchNorm statistics re-estimated on target training "
            "images for the target",
    hyperparameters=(Hyper("lambda_tl", 0.0),),
    adapt_for_target=_adapt,
))
