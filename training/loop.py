"""One training trial: ``L = L_CL + lambda_TL * L_TL`` for every method, then evaluation.

Ciprijanovic et al. (2020), Eq. 1: the total loss is the source cross-entropy ``L_CL`` plus
the transfer loss ``L_TL`` (none, MMD or adversarial) weighted by ``lambda_TL``. One step
takes one source batch (with labels) and one target batch (images only: target labels are
never read during training, early stopping or model selection). Adam with a one-cycle
learning-rate schedule; the returned weights are those of the epoch the stopping rule
(``config.stopping``, :func:`fit`) picks on the *source* validation loss.

``run_trial`` never raises for a failed trial: a non-finite loss, running out of memory or
any other exception ends as ``status: "failed"`` with its typed reason
(:class:`training.record.Failure`), the error and the traceback in the record. Bad input data
(``galaxies.validate.InvalidDatasetError``) is not a trial failure and is raised.

Whether a step draws a target batch, and which transfer loss it adds, come from the method's
spec (:mod:`training.registry`); the network from the backbone's spec.

Preemption: after every completed epoch ``run_trial`` writes ``out_dir/resume.pt`` atomically
(:data:`RESUME`; everything the next epoch depends on, see :func:`resume_payload`). A trial
started again in the same folder (a resumed search, a requeued job, ``train.py`` with the
same ``--out``) continues from the epoch after the last one checkpointed when the file's
fingerprint (:func:`resume_fingerprint`) matches its configuration, problem, data, device
type and torch version; a file that does not match, or cannot be read, is ignored with a
:class:`ResumeWarning` and the trial starts afresh (overwriting it). On the CPU, at equal
thread counts, the resumed trial's record equals an uninterrupted run's (losses, metrics,
best epoch, diagnostics, weights; ``tests/test_trial_resume.py``). ``resume.pt`` is removed
once ``record.json`` is written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import random
import time
import traceback
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from galaxies.atomic import atomic_path
from galaxies.datasets import (
    Benchmark,
    PairedBatches,
    domain_stats,
    load_benchmark,
    split_tensors,
)
from galaxies.schema import SPLITS
from galaxies.validate import InvalidDatasetError
from models import create_classifier
from models.registry import get_backbone
from training.checkpoint import CHECKPOINT, CheckpointError, read_checkpoint, write_checkpoint
from training.compute_path import machine, resolve_compute_path
from training.config import TrainConfig
from training.evaluate import Predictions, feature_mmd, predict, split_report
from training.naming import problem_name
from training.record import (
    PREDICTIONS,
    ROC,
    Failure,
    base_record,
    json_safe_attrs,
    write_json,
    write_npz,
)
from training.registry import create_transfer_loss, get_method
from training.validators import VALIDATOR_KEYS, label_free_validators

EVAL_SPLITS = (("source", "val"), ("target", "val"), ("source", "test"), ("target", "test"))
#: Every label-free diagnostic of a record, in the record's order.
DIAGNOSTIC_KEYS = ("source_val_loss", "target_val_entropy", "feature_mmd_val", *VALIDATOR_KEYS)
#: The epoch checkpoint of a running trial (removed once its record is written).
RESUME = "resume.pt"
#: Layout version of ``resume.pt`` (part of its fingerprint).
RESUME_FORMAT = 1
#: Steps between two host looks at the device-side finiteness flag (each one is a device sync).
FINITE_CHECK_EVERY = 16


class TrialFailedError(RuntimeError):
    """A trial stopped for a reason that belongs in its record (e.g. a non-finite loss).

    Attributes:
        failure: the typed reason.
    """

    def __init__(self, message: str, failure: Failure):
        super().__init__(message)
        self.failure = failure


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed every RNG, ask for deterministic kernels, return the batch-order generator."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    return torch.Generator().manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states (torch CPU, CUDA or MPS when used, NumPy, Python)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`_rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def steps_cap(config: TrainConfig) -> int | None:
    """Steps per epoch allowed by ``max_batches_per_epoch`` and ``max_images_per_epoch``.

    ``None`` = a full pass. The image cap makes trials of every batch size cost the same
    (``max(1, max_images_per_epoch // batch_size)`` steps of ``batch_size`` source images).
    """
    caps = [config.max_batches_per_epoch] if config.max_batches_per_epoch else []
    if config.max_images_per_epoch:
        caps.append(max(1, config.max_images_per_epoch // config.batch_size))
    return min(caps) if caps else None


class _Trainer:
    """State of one training run (model, transfer loss, optimiser, schedule, data)."""

    def __init__(self, config: TrainConfig, bench: Benchmark, device: torch.device):
        self.config = config
        self.device = device
        self.generator = seed_everything(config.seed, device)
        self.model = create_classifier(config).to(device)
        self.path = resolve_compute_path(config.precision, config.channels_last, config.compile,
                                         device, get_backbone(config.backbone).fp32_channels_last)
        self.memory_format = torch.channels_last if self.path.channels_last else None
        if self.memory_format is not None:
            self.model = self.model.to(memory_format=self.memory_format)
        # Only the training pass is compiled; evaluation runs the eager model in eval mode.
        self.forward = (torch.compile(self.model.forward_with_features) if self.path.compile
                        else self.model.forward_with_features)
        self.transfer = create_transfer_loss(config, self.model.feature_dim).to(device)
        spec = get_method(config.method)
        self.uses_target = spec.needs_target
        self.adapt_for_target = spec.adapt_for_target

        self.stats = domain_stats(bench, config.normalization)
        self.data = {
            (domain, split): split_tensors(getattr(bench, domain), split, self.stats[domain])
            for domain in ("source", "target")
            for split in ("train", "val", "test")
        }
        self.galaxy_ids = {
            (domain, split): getattr(bench, domain).galaxy_id[
                getattr(bench, domain).split == SPLITS[split]]
            for domain in ("source", "target")
            for split in ("val", "test")
        }
        xs, ys = self.data[("source", "train")]
        xt, _target_labels_unused = self.data[("target", "train")]
        xt = xt if self.uses_target else None  # no-DA trains on the source alone
        if device.type == "cuda":
            xs, ys = xs.to(device), ys.to(device)
            xt = xt.to(device) if xt is not None else None
        self.batches = PairedBatches(
            xs,
            ys,
            xt,
            config.batch_size,
            self.generator,
            max_batches=steps_cap(config),
        )
        groups = [{"params": list(self.model.parameters()), "lr": config.lr}]
        groups += self.transfer.parameter_groups(config.lr)
        self.optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay)
        self.steps_per_epoch = len(self.batches)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=[group["lr"] for group in groups],
            total_steps=self.total_steps,
            pct_start=config.onecycle_pct_start,
            div_factor=config.onecycle_div_factor,
            final_div_factor=config.onecycle_final_div_factor,
        )
        self.step_count = 0
        # Step bookkeeping stays on the device: no host synchronisation inside a step.
        acc_dtype = torch.float32 if device.type == "mps" else torch.float64
        self._sums = torch.zeros(3, dtype=acc_dtype, device=device)
        self._step_t = torch.zeros((), dtype=torch.long, device=device)
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self._bad_values = torch.zeros(3, dtype=acc_dtype, device=device)
        self._zero = torch.zeros((), device=device)

    def state_dict(self) -> dict[str, Any]:
        """Everything the next epoch depends on, at an epoch boundary (see :data:`RESUME`).

        Network and transfer-loss weights (a DANN domain classifier, SIDDA's learned loss
        weights), the optimiser (every parameter group, its moments, its one-cycle learning
        rates and momenta), the schedule, the step count (DANN's GRL progress derives from
        it), the batch-order generator and the target permutation of :class:`PairedBatches`,
        and the global RNGs (torch's CPU one drives dropout; CUDA's, NumPy's and Python's are
        kept too).
        """
        return {
            "model": self.model.state_dict(),
            "transfer": self.transfer.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step_count": self.step_count,
            "generator": self.generator.get_state(),
            # PairedBatches keeps its target permutation between epochs (private attributes).
            "target_order": self.batches._target_order.cpu(),
            "target_pos": self.batches._target_pos,
            "rng": _rng_state(self.device),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the model, compiled or not, is updated in place)."""
        self.model.load_state_dict(state["model"])
        self.transfer.load_state_dict(state["transfer"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_count = int(state["step_count"])
        self._step_t.fill_(self.step_count)
        self.generator.set_state(state["generator"])
        order = state["target_order"]
        if self.batches.target_x is not None:
            order = order.to(self.batches.target_x.device)
        self.batches._target_order, self.batches._target_pos = order, int(state["target_pos"])
        _set_rng_state(state["rng"], self.device)

    def autocast(self) -> torch.autocast:
        """bf16 autocast of the network on the bf16 path (a no-op for fp32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.path.precision == "bf16")

    def losses(self, xs: torch.Tensor, ys: torch.Tensor,
               xt: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_CL, L_TL)`` of one step; the network under :meth:`autocast`, losses in fp32.

        A method that needs target images gets one joint forward pass of ``[xs; xt]`` (the
        batch statistics of BatchNorm see both domains, as in the authors' code).
        """
        x = torch.cat([xs, xt]) if self.uses_target else xs
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        with self.autocast():
            features, logits = self.forward(x)
        n = len(xs)
        loss_cl = F.cross_entropy(logits[:n].float(), ys)
        if not self.uses_target:
            return loss_cl, self._zero
        if self.transfer.needs_outputs:  # e.g. Fisher + entropy, CDAN (training.transfer)
            return loss_cl, self.transfer(features[:n].float(), features[n:].float(),
                                          logits_s=logits[:n].float(),
                                          logits_t=logits[n:].float(), y_s=ys)
        return loss_cl, self.transfer(features[:n].float(), features[n:].float())

    def _track(self, loss: torch.Tensor, loss_cl: torch.Tensor, loss_tl: torch.Tensor) -> None:
        """Add the step's losses to the epoch sums; remember the first non-finite step."""
        values = torch.stack([loss, loss_cl, loss_tl]).detach().to(self._sums.dtype)
        self._sums += values
        newly_bad = (~torch.isfinite(values).all()) & (self._first_bad < 0)
        self._first_bad = torch.where(newly_bad, self._step_t, self._first_bad)
        self._bad_values = torch.where(newly_bad, values, self._bad_values)
        self._step_t += 1

    def check_finite(self, epoch: int, first_step: int) -> None:
        """One host look at the device-side flag; raise if a step had a non-finite loss.

        Raises:
            TrialFailedError: (``F_nan``) naming the epoch, the step and its losses.
        """
        bad = int(self._first_bad)
        if bad < 0:
            return
        values = self._bad_values.tolist()
        raise TrialFailedError(
            f"non-finite loss at epoch {epoch} step {bad - first_step + 1} "
            f"(L={values[0]:.4g}, L_CL={values[1]:.4g}, L_TL={values[2]:.4g}); "
            "lower lr or lambda_tl",
            Failure.NAN,
        )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the source training split; returns mean losses and timings.

        The host looks at the device-side finiteness flag every :data:`FINITE_CHECK_EVERY`
        steps and at the end of the epoch, never inside a step.
        """
        self.model.train()
        self.transfer.train()
        self._sums.zero_()
        first_step = self.step_count
        epoch_start = time.perf_counter()
        compute_s = 0.0
        n_steps = 0
        for xs, ys, xt in self.batches:
            tick = time.perf_counter()
            xs = xs.to(self.device, non_blocking=True)
            ys = ys.to(self.device, non_blocking=True)
            if xt is not None:
                xt = xt.to(self.device, non_blocking=True)
            self.transfer.set_progress(self.step_count / max(self.total_steps, 1))
            loss_cl, loss_tl = self.losses(xs, ys, xt)
            loss = self.transfer.combine(loss_cl, loss_tl, self.config.lambda_tl)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self._track(loss, loss_cl, loss_tl)
            self.step_count += 1
            n_steps += 1
            if n_steps % FINITE_CHECK_EVERY == 0:
                self.check_finite(epoch, first_step)
            compute_s += time.perf_counter() - tick
        self.check_finite(epoch, first_step)
        means = (self._sums / max(n_steps, 1)).tolist()
        return {
            "train_loss": means[0],
            "train_cl_loss": means[1],
            "train_tl_loss": means[2],
            "train_time_s": time.perf_counter() - epoch_start,
            "train_compute_s": compute_s,
            "train_steps": n_steps,
        }

    def predict(self, x: torch.Tensor, y: torch.Tensor | None, keep_features: bool = False,
                model: torch.nn.Module | None = None):
        """:func:`training.evaluate.predict` at the trial's precision and memory layout."""
        return predict(self.model if model is None else model, x, y, self.device,
                       keep_features=keep_features, precision=self.path.precision,
                       channels_last=self.path.channels_last)

    def target_model(self) -> torch.nn.Module:
        """The network that scores the target splits.

        The trained one, or the method's ``adapt_for_target`` of it on the unlabelled target
        *training* images (AdaBN).
        """
        if self.adapt_for_target is None:
            return self.model
        images, _target_labels_unused = self.data[("target", "train")]
        return self.adapt_for_target(self.model, images, self.device)

    def source_val(self, keep_features: bool = False) -> Predictions:
        """The source validation split scored by the current weights.

        Its loss is the early-stopping signal; :func:`fit` passes the same predictions (with
        their features when an epoch callback may read them) to the epoch's interim record,
        so the split is evaluated once per epoch.
        """
        x, y = self.data[("source", "val")]
        return self.predict(x, y, keep_features=keep_features)


#: ``on_epoch(epoch, interim) -> stop?``: called after every epoch;
#: ``interim(diagnostics, predictions=False)`` evaluates the current weights on the validation
#: splits, computing only the named diagnostics (``None``: all) and, with ``predictions``, the
#: per-image predictions too (see :func:`interim_record`). A callback with
#: ``state_dict()`` and ``load_state_dict(state)`` methods (e.g. a search's epoch reporter) has
#: its state saved in ``resume.pt`` and given back when the trial resumes.
EpochCallback = Callable[[int, Callable[..., dict[str, Any]]], bool]


@dataclass
class FitState:
    """Where :func:`fit` stands after an epoch: early stopping and whether training is over.

    Attributes:
        epoch: the last completed epoch (0: none yet).
        best_loss: the lowest source validation loss so far.
        best_epoch: its epoch (0: none yet).
        best_state: the network's state dict at ``best_epoch`` (``None``: none yet).
        waited: epochs since the last improvement (early stopping's patience counter).
        done: training is over after ``epoch`` (last epoch, patience spent, or ``stopped``).
        stopped: ``on_epoch`` ended the run before the last epoch.
        peak_lr: the highest learning rate at the end of an epoch so far.
    """

    epoch: int = 0
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    waited: int = 0
    done: bool = False
    stopped: bool = False
    peak_lr: float = 0.0


def fit(trainer: _Trainer, history: list[dict[str, Any]], progress: bool,
        on_epoch: EpochCallback | None = None, state: FitState | None = None,
        checkpoint: Callable[[FitState], None] | None = None) -> tuple[int, bool]:
    """Train; return the weights of the epoch that ``config.stopping`` picks.

    The rules (``training.config.STOPPING_RULES``), all on the *source* validation loss, never
    on target labels:

    - ``best``: train the whole one-cycle schedule; restore the epoch of the lowest loss.
    - ``best_after_peak``: the whole schedule; the lowest loss among the epochs after the
      learning-rate peak (an epoch whose end-of-epoch lr is below the highest one before it);
      the last epoch when none is (a run a stopper ended before the peak).
    - ``last``: the whole schedule; the final, annealed weights.
    - ``patience``: early stopping (Ciprijanovic et al. 2020): end after ``config.patience``
      epochs without a lower loss; restore the best epoch. It can end a run in the
      high-learning-rate phase (``benchmarks/stopping_study.py`` measures how often).

    Appends one row per epoch to ``history`` (so a failed trial keeps its curves). After each
    epoch ``on_epoch`` (a search's stopper) may end the run before the last epoch, then
    ``checkpoint(state)`` is called (``run_trial`` writes ``resume.pt`` there).

    Args:
        trainer: the run's state.
        history: the rows of the epochs done so far (appended to).
        progress: show a progress bar over epochs.
        on_epoch: see :data:`EpochCallback`.
        state: continue after ``state.epoch`` (a resumed trial; ``trainer`` and ``history``
            restored to the same epoch); default: from the first epoch.
        checkpoint: called after every epoch with the updated state.

    Returns:
        ``(best epoch, stopped)``: ``stopped`` is True when ``on_epoch`` ended the run before
        ``config.epochs``.
    """
    config = trainer.config
    state = state if state is not None else FitState()
    epochs = range(state.epoch + 1, config.epochs + 1) if not state.done else range(0)
    bar = tqdm(epochs, desc="epochs", unit="epoch", disable=not progress,
               initial=state.epoch, total=config.epochs)
    for epoch in bar:
        tick = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch, **trainer.train_epoch(epoch)}
        source_val = trainer.source_val(keep_features=on_epoch is not None)
        labels = trainer.data[("source", "val")][1].numpy().astype(bool)
        row["source_val_loss"] = source_val.loss
        row["source_val_accuracy"] = float(((source_val.prob_merger >= 0.5) == labels).mean())
        row["lr"] = trainer.optimizer.param_groups[0]["lr"]
        row["epoch_time_s"] = time.perf_counter() - tick
        history.append(row)
        bar.set_postfix(
            loss=f"{row['train_loss']:.3f}", val_acc=f"{row['source_val_accuracy']:.3f}"
        )
        rule = config.stopping
        eligible = rule != "best_after_peak" or row["lr"] < state.peak_lr
        state.peak_lr = max(state.peak_lr, row["lr"])
        if rule == "last":  # the current weights are the ones returned
            state.best_loss, state.best_epoch = row["source_val_loss"], epoch
            state.best_state = None
        elif eligible and row["source_val_loss"] < state.best_loss:
            state.best_loss, state.best_epoch, state.waited = row["source_val_loss"], epoch, 0
            state.best_state = copy.deepcopy(trainer.model.state_dict())
        else:
            state.waited += 1
        if on_epoch is not None and on_epoch(
                epoch, lambda diagnostics=None, predictions=False, scored=source_val:
                    interim_record(trainer, diagnostics, scored, predictions)):
            state.stopped = epoch < config.epochs
        state.epoch = epoch
        out_of_patience = rule == "patience" and state.waited >= config.patience
        state.done = state.stopped or out_of_patience or epoch == config.epochs
        if checkpoint is not None:
            checkpoint(state)
        if state.done:
            break
    if state.best_state is not None:
        trainer.model.load_state_dict(state.best_state)
    elif state.best_epoch == 0:  # no epoch was eligible (stopped before the peak)
        state.best_epoch = state.epoch
    return state.best_epoch, state.stopped


#: Diagnostics that need the validation features of both domains.
_FEATURE_DIAGNOSTICS = frozenset({"feature_mmd_val", "target_val_snd", "dev_risk"})


def evaluate(trainer: _Trainer, splits: tuple[tuple[str, str], ...] = EVAL_SPLITS,
             target_model: torch.nn.Module | None = None,
             diagnostics: Collection[str] | None = None,
             source_val: Predictions | None = None,
             ) -> tuple[dict, dict, dict, dict[str, np.ndarray]]:
    """Metrics, ROC curves, label-free diagnostics and per-image predictions of ``splits``.

    Predictions are keyed ``<domain>_<split>_{p_merger,label,galaxy_id}``. The diagnostics
    need both validation splits. ``target_model`` is the network that scores the target
    splits when the caller already made it (default: :meth:`_Trainer.target_model`).
    The label-free validators (:mod:`training.validators`) read the source validation
    features and per-row losses, and the target validation features and probabilities only.

    Args:
        trainer: the trial.
        splits: ``(domain, split)`` pairs to score.
        target_model: see above.
        diagnostics: compute only these diagnostics (``None``: every one of
            :data:`DIAGNOSTIC_KEYS`).
        source_val: the source validation split already scored by the current weights
            (:meth:`_Trainer.source_val`), reused instead of scoring it again.
    """
    wanted = set(DIAGNOSTIC_KEYS if diagnostics is None else diagnostics)
    unknown = wanted - set(DIAGNOSTIC_KEYS)
    if unknown:
        raise ValueError(f"unknown diagnostics {sorted(unknown)}; valid: {DIAGNOSTIC_KEYS}")
    metrics, roc, diagnostics_out, features, predictions = {}, {}, {}, {}, {}
    source_val_losses, target_val_prob = None, None
    models = {"source": trainer.model}
    if any(domain == "target" for domain, _ in splits):
        models["target"] = target_model if target_model is not None else trainer.target_model()
    for domain, split in splits:
        x, y = trainer.data[(domain, split)]
        if (domain, split) == ("source", "val") and source_val is not None:
            pred = source_val
        else:
            pred = trainer.predict(x, y, keep_features=split == "val" and bool(
                wanted & _FEATURE_DIAGNOSTICS), model=models[domain])
        report = split_report(y, pred)
        key = f"{domain}_{split}"
        metrics[key], roc[key] = report["metrics"], report["roc"]
        predictions[f"{key}_p_merger"] = pred.prob_merger.astype(np.float64)
        predictions[f"{key}_label"] = y.numpy().astype(np.uint8)
        predictions[f"{key}_galaxy_id"] = trainer.galaxy_ids[(domain, split)]
        if split == "val":
            features[domain] = pred.features
            if domain == "source":
                diagnostics_out["source_val_loss"] = pred.loss
                source_val_losses = pred.losses
            else:
                diagnostics_out["target_val_entropy"] = report["entropy"]
                target_val_prob = pred.prob_merger  # never pred.loss(es): they read labels
    if {"source", "target"} <= features.keys():
        if "feature_mmd_val" in wanted:
            diagnostics_out["feature_mmd_val"] = feature_mmd(features["source"],
                                                             features["target"])
        diagnostics_out.update(label_free_validators(
            features["source"], source_val_losses, features["target"], target_val_prob,
            keys=wanted & set(VALIDATOR_KEYS)))
    order = {key: i for i, key in enumerate(DIAGNOSTIC_KEYS)}
    diagnostics_out = dict(sorted(((k, v) for k, v in diagnostics_out.items() if k in wanted),
                                  key=lambda item: order[item[0]]))
    return metrics, roc, diagnostics_out, predictions


VAL_SPLITS = (("source", "val"), ("target", "val"))


def interim_record(trainer: _Trainer, diagnostics: Collection[str] | None = None,
                   source_val: Predictions | None = None, predictions: bool = False
                   ) -> dict[str, Any]:
    """The current weights scored as a finished trial would be, on the validation splits only.

    ``{"status": "ok", "metrics": {source_val, target_val}, "diagnostics": {...}}``, enough
    for every objective of :mod:`search.objectives` (test splits are not evaluated). Only the
    named ``diagnostics`` are computed (``None``: all); a search's epoch reporter asks for its
    objective's alone (the validators cost up to seconds a call). ``source_val``: the epoch's
    source validation predictions, reused (see :func:`evaluate`). ``predictions``: add the
    per-image predictions of both validation splits (``<domain>_val_{p_merger,label,
    galaxy_id}``, as in ``predictions.npz``) under ``"predictions"``, for studies that compare
    epochs image by image (``benchmarks/stopping_study.py``).
    """
    metrics, _, diagnostics_out, per_image = evaluate(
        trainer, VAL_SPLITS, diagnostics=diagnostics, source_val=source_val)
    out = {"status": "ok", "metrics": metrics, "diagnostics": diagnostics_out}
    if predictions:
        out["predictions"] = per_image
    return out


def _score_and_write(trainer: _Trainer, record: dict[str, Any], out_dir: Path,
                     best_epoch: int) -> None:
    """Evaluate the trainer's network; write checkpoint, ROC and predictions; fill ``record``."""
    record["data"]["target_channel_stats"] = trainer.stats["target"].to_dict()
    target_model = trainer.target_model()  # adapted once (AdaBN), used for scores and file
    metrics, roc, diagnostics, predictions = evaluate(trainer, target_model=target_model)
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


class ReevaluationError(ValueError):
    """A finished trial that cannot stand for another method's training (exit status 2)."""


def reevaluate_trial(config: TrainConfig, trained_dir: str | os.PathLike,
                     data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                     problem: str | None = None) -> dict[str, Any]:
    """Score a finished trial's network as a trial of ``config`` (AdaBN from a no-DA trial).

    Allowed only when ``config`` would train *exactly* the same network: the two
    configurations differ in ``method`` alone, neither method draws target batches and both
    have ``lambda_tl == 0`` (training is then the same deterministic source-only run; same
    seed, same weights, ``tests/test_controls.py``). The new record keeps the trained
    history and best epoch, records ``reevaluated_from``, and is scored by ``config.method``
    (e.g. AdaBN's adapted BatchNorm statistics on the target splits).

    Raises:
        ReevaluationError: the trial is not ``ok``, has no checkpoint, was trained on other
            data, or its configuration would not train the same network.
        InvalidDatasetError: the data files are missing or invalid.
    """
    start = time.perf_counter()
    trained_dir, out_dir = Path(trained_dir), Path(out_dir)
    from training.record import portable_path, read_record

    trained = read_record(trained_dir)
    if trained is None or trained.get("status") != "ok":
        raise ReevaluationError(f"{trained_dir}: no ok record.json. Fix: pass a finished trial")
    if not (trained_dir / CHECKPOINT).is_file():
        raise ReevaluationError(f"{trained_dir}/{CHECKPOINT} is missing. Fix: rerun the trial")
    theirs = TrainConfig.from_dict(trained["config"])
    same = {k: v for k, v in theirs.to_dict().items() if k != "method"}
    mine = {k: v for k, v in config.to_dict().items() if k != "method"}
    specs = (get_method(theirs.method), get_method(config.method))
    if same != mine or any(s.needs_target for s in specs) or config.lambda_tl != 0:
        differ = sorted(k for k in mine if mine[k] != same.get(k))
        raise ReevaluationError(
            f"{trained_dir} ({theirs.method}) does not train the network {config.method} "
            f"would (fields that differ: {differ or 'none'}; both methods must be source-only "
            "with lambda_tl = 0). Fix: train this configuration instead")
    bench = load_benchmark(data_dir)
    if trained["data"]["source_attrs"] != json_safe_attrs(bench.source.attrs):
        raise ReevaluationError(f"{trained_dir} was trained on other data than {data_dir}. "
                                "Fix: pass the trial's own data folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    problem = problem or problem_name(config.method, config.backbone)
    record = base_record(config, problem, bench, str(device))
    trainer = _Trainer(config, bench, device)
    bench = None
    try:
        state = read_checkpoint(trained_dir / CHECKPOINT, device)
        trainer.model.load_state_dict(state["model"])
    except (CheckpointError, RuntimeError) as exc:
        raise ReevaluationError(f"{exc}".splitlines()[0]) from None
    record["history"] = trained["history"]
    record["best_epoch"], record["epochs_run"] = trained["best_epoch"], trained["epochs_run"]
    record["reevaluated_from"] = portable_path(trained_dir)
    _score_and_write(trainer, record, out_dir, trained["best_epoch"])
    record["status"] = "ok"
    record["wall_time_s"] = time.perf_counter() - start
    write_json(out_dir / "record.json", record)
    return record


def resume_fingerprint(trainer: _Trainer, problem: str, record: dict[str, Any]) -> str:
    """SHA-256 of what a ``resume.pt`` must agree with to be continued.

    The problem, every ``TrainConfig`` field, the data's identity (both domains' HDF5
    attributes, pair id included, the rows of every split and the channel statistics computed
    from the training pixels), the device type, the resolved compute path (``precision=auto``
    resolves per machine), the torch version and :data:`RESUME_FORMAT`.
    Not the data folder's path (a moved benchmark is the same data) nor the host.
    """
    data = record["data"]
    payload = {
        "format": RESUME_FORMAT, "problem": problem, "config": trainer.config.to_dict(),
        "source_attrs": json_safe_attrs(data["source_attrs"]),
        "target_attrs": json_safe_attrs(data["target_attrs"]),
        "channel_stats": {d: s.to_dict() for d, s in trainer.stats.items()},
        "rows": {f"{d}_{s}": len(x) for (d, s), (x, _) in trainer.data.items()},
        "device": trainer.device.type, "torch": torch.__version__,
        "compute_path": trainer.path.to_dict(),  # auto may resolve otherwise on another machine
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ResumeWarning(UserWarning):
    """A ``resume.pt`` that is not continued (another configuration or data, or unreadable)."""


def read_resume(trial_dir: str | os.PathLike, mmap: bool = False) -> dict[str, Any] | None:
    """``trial_dir/resume.pt`` as written (tensors on the CPU); ``None`` if there is none.

    Args:
        trial_dir: the trial's folder.
        mmap: map the file instead of reading it (cheap when only ``config``, ``problem`` or
            ``epoch`` are looked at; the tensors are then backed by the file).

    Raises:
        Exception: the file exists but cannot be read (whatever ``torch.load`` raises).
    """
    path = Path(trial_dir) / RESUME
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _usable_resume(out_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The ``resume.pt`` of ``out_dir`` when it matches ``fingerprint``; else warn, ``None``."""
    path = out_dir / RESUME
    try:
        resume = read_resume(out_dir)
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is not a failure
        warnings.warn(f"{path} cannot be read ({type(exc).__name__}: {exc}); the trial starts "
                      "from epoch 1 and will overwrite it", ResumeWarning, stacklevel=3)
        return None
    if resume is None:
        return None
    if not isinstance(resume, dict) or resume.get("fingerprint") != fingerprint:
        warnings.warn(f"{path} belongs to another configuration, data, device or torch version "
                      "(its fingerprint differs); the trial starts from epoch 1 and will "
                      "overwrite it", ResumeWarning, stacklevel=3)
        return None
    return resume


def resume_payload(trainer: _Trainer, state: FitState, history: list[dict[str, Any]],
                   fingerprint: str, problem: str, elapsed_s: float,
                   resumed: list[dict[str, Any]], on_epoch: Any = None) -> dict[str, Any]:
    """The content of ``resume.pt`` after epoch ``state.epoch``.

    ``{format, fingerprint, problem, config, epoch, trainer (:meth:`_Trainer.state_dict`), fit
    (:class:`FitState`: best epoch, loss and weights (``"model"`` when they are the epoch's
    own), patience counter, done, stopped),
    history, elapsed_s, resumed, on_epoch (the callback's ``state_dict()`` or ``None``),
    host, written_at}``; only tensors and plain Python values (``torch.load(...,
    weights_only=True)`` reads it).
    """
    saver = getattr(on_epoch, "state_dict", None)
    fit = {name: getattr(state, name) for name in FitState.__dataclass_fields__}
    if state.best_state is not None and state.best_epoch == state.epoch:
        fit["best_state"] = "model"  # the best weights are the model's: not stored twice
    return {
        "format": RESUME_FORMAT, "fingerprint": fingerprint, "problem": problem,
        "config": trainer.config.to_dict(), "epoch": state.epoch,
        "trainer": trainer.state_dict(),
        "fit": fit,
        "history": list(history), "elapsed_s": elapsed_s, "resumed": list(resumed),
        "on_epoch": saver() if callable(saver) else None,
        "host": platform.node(), "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _remove_resume(out_dir: Path) -> None:
    """Remove ``resume.pt`` and any temporary file a killed write of it left."""
    for path in out_dir.glob(RESUME + ".tmp*"):
        path.unlink(missing_ok=True)
    (out_dir / RESUME).unlink(missing_ok=True)


def run_trial(
    config: TrainConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    problem: str | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Train and evaluate one configuration; write ``out_dir/record.json`` and return it.

    After every epoch the trial's state is written to ``out_dir/resume.pt`` (atomically); a
    trial started again in the same folder continues from it (see the module docstring). The
    record of a resumed trial has ``resumed``: one ``{"from_epoch", "host", "at"}`` per
    resume; its ``wall_time_s`` adds the time of every attempt up to its last checkpoint.

    Args:
        config: every hyperparameter of the trial.
        data_dir: folder with ``source.h5`` and ``target.h5``.
        out_dir: the trial's folder (``record.json``, ``roc.json``, ``predictions.npz``,
            ``checkpoint.pt``; ``resume.pt`` while it runs).
        problem: the problem name recorded with the trial (default: the config's
            ``<method>_<backbone>``).
        progress: show a progress bar over epochs.
        on_epoch: called after every epoch (see :data:`EpochCallback`); when it ends the run
            early the record's status is ``"stopped"`` (metrics of the best weights so far).
        resume: continue from a matching ``out_dir/resume.pt`` (False: start afresh and
            overwrite it).

    Returns:
        The trial record (see ``docs/CONTRACTS.md``).

    Raises:
        InvalidDatasetError: the data files are missing or do not follow the schema.
    """
    start = time.perf_counter()
    bench = load_benchmark(data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    problem = problem or problem_name(config.method, config.backbone)
    record = base_record(config, problem, bench, str(device))
    elapsed_before = 0.0
    try:
        trainer = _Trainer(config, bench, device)
        record["compute_path"], record["machine"] = trainer.path.to_dict(), machine(device)
        fingerprint = resume_fingerprint(trainer, problem, record)
        previous = _usable_resume(out_dir, fingerprint) if resume else None
        state, resumed = None, []
        if previous is not None:
            try:
                trainer.load_state_dict(previous["trainer"])
                if previous.get("on_epoch") is not None and hasattr(on_epoch, "load_state_dict"):
                    on_epoch.load_state_dict(previous["on_epoch"])
            except Exception as exc:  # noqa: BLE001 - fall back to a fresh start
                warnings.warn(f"{out_dir / RESUME} cannot be continued ({type(exc).__name__}: "
                              f"{exc}); the trial starts from epoch 1", ResumeWarning,
                              stacklevel=2)
                trainer = _Trainer(config, bench, device)
            else:
                state = FitState(**previous["fit"])
                if isinstance(state.best_state, str):  # "model": the epoch's own weights
                    state.best_state = copy.deepcopy(trainer.model.state_dict())
                record["history"] = list(previous["history"])
                elapsed_before = float(previous["elapsed_s"])
                resumed = [*previous["resumed"], {
                    "from_epoch": state.epoch, "host": platform.node(),
                    "at": time.strftime("%Y-%m-%dT%H:%M:%S")}]
                record["resumed"] = resumed
                if progress:
                    print(f"{out_dir}: resuming after epoch {state.epoch} ({RESUME})",
                          flush=True)
        bench = previous = None  # the trainer holds normalised copies: free the rest

        def checkpoint(fit_state: FitState) -> None:
            payload = resume_payload(trainer, fit_state, record["history"], fingerprint,
                                     problem, elapsed_before + time.perf_counter() - start,
                                     resumed, on_epoch)
            with atomic_path(out_dir / RESUME) as tmp:
                torch.save(payload, tmp)

        best_epoch, stopped = fit(trainer, record["history"], progress, on_epoch, state,
                                  checkpoint)
        record["best_epoch"], record["epochs_run"] = best_epoch, len(record["history"])
        _score_and_write(trainer, record, out_dir, best_epoch)
        record["status"] = "stopped" if stopped else "ok"
    except InvalidDatasetError:
        raise
    except TrialFailedError as exc:
        record.update(status="failed", failure=str(exc.failure), error=str(exc))
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        record.update(status="failed", failure=str(Failure.OOM),
                      error=f"out of memory: {type(exc).__name__}: {exc}; lower batch_size",
                      traceback=traceback.format_exc())
    except Exception as exc:  # noqa: BLE001 - a trial's failure belongs in its record
        record.update(status="failed", failure=str(Failure.ERROR),
                      error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    record["wall_time_s"] = elapsed_before + time.perf_counter() - start
    write_json(out_dir / "record.json", record)
    _remove_resume(out_dir)  # the record is complete: nothing to continue
    return record
