"""Scoring a trained network: metrics, ROC curves, label-free diagnostics, the trial's files.

:func:`score_splits` scores splits with the trainer's network (AdaBN's adapted one on the
target); :func:`interim_record` scores the validation splits after an epoch (a search's
stopper); :func:`score_and_write` fills a finished trial's record and writes its checkpoint,
ROC curves and per-image predictions.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.checkpoint import CHECKPOINT, write_checkpoint
from training.evaluate import Predictions, split_report
from training.label_free import ValidationOutputs, record_diagnostic_specs
from training.record import (
    PREDICTIONS,
    ROC,
    write_json,
    write_npz,
)
from training.trainer import Trainer

EVAL_SPLITS = (("source", "val"), ("target", "val"), ("source", "test"), ("target", "test"))


def score_splits(trainer: Trainer, splits: tuple[tuple[str, str], ...] = EVAL_SPLITS,
                 target_model: torch.nn.Module | None = None,
                 diagnostics: Collection[str] | None = None,
                 source_val: Predictions | None = None,
                 ) -> tuple[dict, dict, dict, dict[str, np.ndarray]]:
    """Metrics, ROC curves, label-free diagnostics and per-image predictions of ``splits``.

    Predictions are keyed ``<domain>_<split>_{p_merger,label,galaxy_id}``. A diagnostic
    (:mod:`training.label_free`) is computed when the validation splits it waits for are
    scored; it reads :class:`~training.label_free.ValidationOutputs` only: the source
    validation loss, per-row losses and features, and the target validation probabilities and
    features (never a target label). ``target_model`` is the network that scores the target
    splits when the caller already made it (default: :meth:`Trainer.target_model`).

    Args:
        trainer: the trial.
        splits: ``(domain, split)`` pairs to score.
        target_model: see above.
        diagnostics: compute only these diagnostics (``None``: every registered one).
        source_val: the training domain's validation split (the source's; the oracle's
            target) already scored by the current weights (:meth:`Trainer.source_val`),
            reused instead of scoring it again.
    """
    wanted = record_diagnostic_specs(diagnostics)
    keep_features = any(spec.needs_features for spec in wanted)
    metrics, roc, predictions, outputs = {}, {}, {}, {}
    models = {"source": trainer.model}
    if any(domain == "target" for domain, _ in splits):
        models["target"] = target_model if target_model is not None else trainer.target_model()
    for domain, split in splits:
        x, y = trainer.data[(domain, split)]
        if (domain, split) == (trainer.train_domain, "val") and source_val is not None:
            pred = source_val
        else:
            pred = trainer.model_outputs(x, y, keep_features=split == "val" and keep_features,
                                         model=models[domain])
        report = split_report(y, pred)
        key = f"{domain}_{split}"
        metrics[key], roc[key] = report["metrics"], report["roc"]
        predictions[f"{key}_p_merger"] = pred.prob_merger.astype(np.float64)
        predictions[f"{key}_label"] = y.numpy().astype(np.uint8)
        predictions[f"{key}_galaxy_id"] = trainer.galaxy_ids[(domain, split)]
        if (domain, split) == ("source", "val"):
            outputs.update(source_loss=pred.loss, source_losses=pred.losses,
                           source_features=pred.features)
        elif (domain, split) == ("target", "val"):  # never pred.loss(es): they read labels
            outputs.update(target_prob_merger=pred.prob_merger, target_features=pred.features)
    scored = {domain for domain, split in splits if split == "val"}
    view = ValidationOutputs(**outputs)
    diagnostics_out = {spec.name: spec.compute(view) for spec in wanted
                       if scored.issuperset(spec.domains)}
    return metrics, roc, diagnostics_out, predictions


VAL_SPLITS = (("source", "val"), ("target", "val"))


def interim_record(trainer: Trainer, diagnostics: Collection[str] | None = None,
                   source_val: Predictions | None = None, predictions: bool = False
                   ) -> dict[str, Any]:
    """The current weights scored as a finished trial would be, on the validation splits only.

    ``{"status": "ok", "metrics": {source_val, target_val}, "diagnostics": {...}}``, enough
    for every objective of :mod:`search.objectives` (test splits are not evaluated). Only the
    named ``diagnostics`` are computed (``None``: all); a search's epoch reporter asks for its
    objective's alone (the validators cost up to seconds a call). ``source_val``: the epoch's
    source validation predictions, reused (see :func:`score_splits`). ``predictions``: add the
    per-image predictions of both validation splits (``<domain>_val_{p_merger,label,
    galaxy_id}``, as in ``predictions.npz``) under ``"predictions"``, for studies that compare
    epochs image by image (``benchmarks/stopping_study.py``).
    """
    metrics, _, diagnostics_out, per_image = score_splits(
        trainer, VAL_SPLITS, diagnostics=diagnostics, source_val=source_val)
    out = {"status": "ok", "metrics": metrics, "diagnostics": diagnostics_out}
    if predictions:
        out["predictions"] = per_image
    return out


def score_and_write(trainer: Trainer, record: dict[str, Any], out_dir: Path,
                     best_epoch: int) -> None:
    """Evaluate the trainer's network; write checkpoint, ROC and predictions; fill ``record``."""
    record["data"]["target_channel_stats"] = trainer.stats["target"].to_dict()
    target_model = trainer.target_model()  # adapted once (AdaBN), used for scores and file
    metrics, roc, diagnostics, predictions = score_splits(trainer, target_model=target_model)
    checkpoint = {"model": trainer.model.state_dict(), "config": trainer.config.to_dict(),
                  "channel_stats": trainer.stats["source"].to_dict(),
                  "target_channel_stats": trainer.stats["target"].to_dict(),
                  "best_epoch": best_epoch}
    if trainer.adapt_for_target is not None:  # the network that scored the target
        checkpoint["target_model"] = target_model.state_dict()
    write_checkpoint(out_dir / CHECKPOINT, checkpoint)
    write_json(out_dir / ROC, roc)
    write_npz(out_dir / PREDICTIONS, predictions)
    record.update(metrics=metrics, diagnostics=diagnostics)
    record["files"] = {"roc": ROC, "predictions": PREDICTIONS,
                       "checkpoint": CHECKPOINT}


