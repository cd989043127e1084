r"""The source + target oracle: the same network trained on both domains' labels (a ceiling).

Not a domain-adaptation method. The target-trained oracle (``training/methods/oracle.py``)
asks what target labels alone give; on the paper-size benchmark it stays *below* MMD and DANN
(held-out data seed 11, training seed 1: 83.4 % target against MMD's 84.4 % and DANN's
84.2 %). One explanation: a network trained on the noisy target images alone never sees the
noiseless source images that show the merger features best. This oracle tests it and gives
the ceiling a labelled target would allow: every label of both domains, the two labelled
training splits pooled and shuffled together,

.. math:: L = \frac{1}{|B|} \sum_{(x, y) \in B} L_{CL}(x, y),
          \qquad B \subset \{(x_s, y_s)\} \cup \{(x_t, y_t)\},

with the same backbone, optimiser, number of epochs, schedule and stopping rule as every
method (an epoch is one pass over the pooled split: twice a source pass), the stopping signal
being the loss of the two validation splits pooled. Like the target-trained oracle, its
records are never used for a choice (defaults, searches, model selection).
"""

from __future__ import annotations

from models.registry import Hyper
from training.methods.none import build  # no transfer loss: the labels of both domains teach
from training.registry import MethodSpec, register_method

__all__ = ["SPEC"]

SPEC = register_method(MethodSpec(
    name="oracleboth", label="source + target oracle", color="#7F7F7F", build=build,
    needs_target=False, order=91, trains_on="both",
    summary="upper bound: trained on source and target labels (never used for a choice)",
    hyperparameters=(Hyper("lambda_tl", 0.0),),
))
