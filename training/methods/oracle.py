r"""The target-trained oracle: the same network trained on *target* labels (an upper bound).

Not a domain-adaptation method: it answers "how well could this network do on the target if
target labels existed?", the ceiling against which a method's share of the gap is measured
(issue 25: ``(acc_method - acc_noDA) / (acc_oracle - acc_noDA)``). It learns from the labelled
*target training* split alone,

.. math:: L = L_{CL}(x_t, y_t),

with the same backbone, optimiser, schedule and stopping rule as every method, the stopping
signal being the loss of its training domain's validation split (the target's). It is the one
place where target labels are read during training, and its records are never used for a
choice (defaults, searches, model selection).
"""

from __future__ import annotations

from typing import Any

from models.registry import Hyper
from training.methods.none import NoTransferLoss
from training.registry import MethodSpec, register_method

__all__ = ["SPEC"]


def build(config: Any, feature_dim: int) -> NoTransferLoss:
    """No transfer loss: the classifier sees target images with their labels."""
    return NoTransferLoss()


SPEC = register_method(MethodSpec(
    name="oracle", label="target-trained oracle", color="#2F2F2F", build=build,
    needs_target=False, order=90, trains_on="target",
    summary="upper bound: trained on target labels (never used for a choice)",
    hyperparameters=(Hyper("lambda_tl", 0.0),),
))
