"""The state of one training run: device, seeds, network, transfer loss, optimiser, schedule.

:class:`Trainer` builds everything a trial trains (Ciprijanovic et al. 2020, Eq. 1:
``L = L_CL + lambda_TL * L_TL``, Adam with a one-cycle learning rate) and runs one epoch of
steps (:meth:`Trainer.train_epoch`); :func:`training.loop.fit` calls it epoch after epoch.
Its :meth:`Trainer.state_dict` holds plain values and tensors (``resume.pt``,
:mod:`training.resume`).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from galaxies.datasets import (
    Benchmark,
    PairedBatches,
    domain_stats,
    split_tensors,
)
from galaxies.schema import SPLITS
from models import create_classifier
from models.registry import get_backbone
from training.compute_path import resolve_compute_path
from training.config import TrainConfig
from training.denormals import flush_denormals
from training.evaluate import Predictions, model_outputs
from training.record import (
    Failure,
)
from training.registry import create_transfer_loss, get_method

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


class Trainer:
    """State of one training run (model, transfer loss, optimiser, schedule, data)."""

    def __init__(self, config: TrainConfig, bench: Benchmark, device: torch.device):
        self.config = config
        self.device = device
        self.generator = seed_everything(config.seed, device)
        self.model = create_classifier(config).to(device)
        path = resolve_compute_path(config.precision, config.channels_last, config.compile,
                                    device, get_backbone(config.backbone).fp32_channels_last)
        self.path = replace(path, flush_denormal=flush_denormals(warn=device.type == "cpu"))
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
        #: The labelled domain the classifier learns from: the source, except for the oracles
        #: (``"target"``; ``"both"``: the source and target splits pooled).
        self.train_domain = spec.trains_on

        self.stats = domain_stats(bench, config.normalization)
        self.data = {
            (domain, split): split_tensors(getattr(bench, domain), split, self.stats[domain])
            for domain in ("source", "target")
            for split in ("train", "val", "test")
        }
        if self.train_domain == "both":  # the source + target oracle: both labelled splits
            for split in ("train", "val"):
                self.data[("both", split)] = tuple(
                    torch.cat([self.data[("source", split)][i], self.data[("target", split)][i]])
                    for i in (0, 1))
        self.galaxy_ids = {
            (domain, split): getattr(bench, domain).galaxy_id[
                getattr(bench, domain).split == SPLITS[split]]
            for domain in ("source", "target")
            for split in ("val", "test")
        }
        xs, ys = self.data[(self.train_domain, "train")]  # not the source's for the oracles
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
            # PairedBatches keeps its target permutation between epochs.
            **self.batches.state_dict(),
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
        self.batches.load_state_dict(state)
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

    def model_outputs(self, x: torch.Tensor, y: torch.Tensor | None,
                      keep_features: bool = False, model: torch.nn.Module | None = None):
        """:func:`training.evaluate.model_outputs` at the trial's precision and memory layout."""
        return model_outputs(self.model if model is None else model, x, y, self.device,
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
        """The validation split of the training domain scored by the current weights.

        The source's for every method (the target's for the oracle, which learns from target
        labels; both pooled for the source + target oracle). Its loss is the stopping signal;
        :func:`training.loop.fit` passes the same predictions (with their features when an
        epoch callback may read them) to the epoch's interim record, so the split is evaluated
        once per epoch.
        """
        x, y = self.data[(self.train_domain, "val")]
        return self.model_outputs(x, y, keep_features=keep_features)


