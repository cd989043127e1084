"""Evaluation of a trained classifier: probabilities, features, metrics and ROC curves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.metrics import classification_metrics, mean_entropy, roc_points

EVAL_BATCH_SIZE = 512


@dataclass
class Predictions:
    """Outputs of a model on one split.

    Attributes:
        prob_merger: predicted merger probability [N].
        loss: mean cross-entropy against ``labels`` (``nan`` when labels are not given).
        features: transfer-loss features [N, D] (only when asked for), on the CPU.
        losses: per-row cross-entropy [N] (float64; ``None`` when labels are not given).
    """

    prob_merger: np.ndarray
    loss: float
    features: torch.Tensor | None = None
    losses: np.ndarray | None = None


def model_outputs(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    device: torch.device,
    keep_features: bool = False,
    precision: str = "fp32",
    channels_last: bool = False,
) -> Predictions:
    """Run ``model`` in eval mode over ``images`` in batches, under ``torch.inference_mode``.

    Args:
        model: a ``models.Classifier`` (``forward_with_features(x) -> (features, logits)``).
        images: normalised images [N, 3, 75, 75] on any device.
        labels: int64 labels [N], or ``None`` (target labels are passed only to score a
            finished model, never during training).
        device: where to compute.
        keep_features: also return the features the transfer loss sees (as float32).
        precision: ``"fp32"``, or ``"bf16"`` for the network under bf16 autocast (the softmax
            and the loss in fp32), as the trial was trained.
        channels_last: feed the batches in NHWC layout.
    """
    was_training = model.training
    model.eval()
    probs, feats, row_losses = [], [], []
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for start in range(0, len(images), EVAL_BATCH_SIZE):
            x = images[start : start + EVAL_BATCH_SIZE].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                features, logits = model.forward_with_features(x)
            logits = logits.float()
            probs.append(torch.softmax(logits, dim=1)[:, 1])
            if labels is not None:
                y = labels[start : start + EVAL_BATCH_SIZE].to(device, non_blocking=True)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
                row_losses.append(F.cross_entropy(logits, y, reduction="none").double())
            if keep_features:
                feats.append(features.float())
    model.train(was_training)
    prob = torch.cat(probs).cpu().numpy().astype(np.float64) if probs else np.zeros(0)
    losses = (torch.cat(row_losses).cpu().numpy() if row_losses else np.zeros(0)
              ) if labels is not None else None
    loss = float(loss_sum) / max(len(images), 1) if labels is not None else float("nan")
    features_out = torch.cat(feats).cpu().clone() if keep_features and feats else None
    return Predictions(prob, loss, features_out, losses)


def split_report(labels: torch.Tensor, predictions: Predictions) -> dict:
    """Metrics, ROC curve and mean prediction entropy of one split."""
    y = labels.cpu().numpy()
    return {
        "metrics": classification_metrics(y, predictions.prob_merger),
        "roc": roc_points(y, predictions.prob_merger),
        "entropy": mean_entropy(predictions.prob_merger),
    }


FEATURE_MMD_MAX_SAMPLES = 1000


def feature_mmd(source: torch.Tensor, target: torch.Tensor) -> float:
    """Label-free domain gap: biased multi-kernel MMD² between validation features.

    Uses a fixed estimator (5 Gaussian kernels around the median pairwise distance) on at most
    ``FEATURE_MMD_MAX_SAMPLES`` rows per domain, whatever the trial's own transfer loss, so
    that trials of every method are compared on the same scale.
    """
    from training.kernel_mmd import MultiKernelMMD

    generator = torch.Generator().manual_seed(0)
    pick_s = torch.randperm(len(source), generator=generator)[:FEATURE_MMD_MAX_SAMPLES]
    pick_t = torch.randperm(len(target), generator=generator)[:FEATURE_MMD_MAX_SAMPLES]
    estimator = MultiKernelMMD(
        bandwidths="family", base="median", mul=2.0, num=5, estimator="biased"
    )
    with torch.no_grad():
        return float(estimator(source[pick_s].double(), target[pick_t].double()))
