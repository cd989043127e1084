r"""Control: joint-batch BatchNorm, no transfer loss (target images in every batch, λ_TL = 0).

A DA step of this project (as in the authors' code) passes ``[x_s; x_t]`` through the network
in one forward pass, so every BatchNorm layer normalises with statistics of *both* domains,
while no-DA only ever sees the source. This method keeps that joint pass and drops the
transfer loss:

.. math::
    L = L_{CL}(x_s, y_s), \qquad \text{BN statistics from } [x_s; x_t]

so that the part of a DA gain that comes from the shared batch statistics alone (not from
aligning features) is measured on its own. λ_TL is fixed at 0 (the loss is zero anyway).
"""

from __future__ import annotations

from typing import Any

from models.registry import Hyper
from training.methods.none import NoTransferLoss
from training.registry import MethodSpec, register_method

__all__ = ["SPEC"]


def build(config: Any, feature_dim: int) -> NoTransferLoss:
    """The zero loss (the target batch still goes through the network with the source)."""
    return NoTransferLoss()


SPEC = register_method(MethodSpec(
    name="jointbn", label="joint-BN (λ_TL = 0)", color="#8C8C8C", build=build,
    needs_target=True, order=25,
    summary="control: target images in every batch (shared BatchNorm statistics), no "
            "transfer loss",
    hyperparameters=(Hyper("lambda_tl", 0.0),),
))
