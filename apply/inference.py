"""A finished trial as a model to apply: load its network, normalise raw images, get logits.

A trial folder (``record.json`` with status ``ok`` and ``checkpoint.pt``, written by
:func:`training.loop.run_trial`) holds everything needed to score new images the way the
trial scored its own test sets:

- ``checkpoint["model"]``: the trained network, which scored the *source* splits;
- ``checkpoint["target_model"]`` (AdaBN only): the network that scored the *target* splits;
- ``checkpoint["channel_stats"]`` / ``["target_channel_stats"]``: the per-channel mean and std
  that normalised each domain (``x' = (x - mean_c) / std_c``);
- ``calibration.json`` (optional, :mod:`apply.calibration`): a temperature ``T`` fitted on
  the *source validation* split; calibrated probabilities are ``softmax(z / T)``.

New observations are the *target* domain of the paper (Ciprijanovic et al. 2020: the model
is trained on pristine simulations to be applied to noisy, observation-like images), so
:meth:`TrainedModel.logits` defaults to the target network and statistics.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxies.datasets import ChannelStats
from galaxies.schema import IMAGE_SHAPE
from models import create_classifier
from training.checkpoint import CHECKPOINT, CheckpointError, checkpoint_sha256, read_checkpoint
from training.config import TrainConfig
from training.record import CALIBRATION_FILE, read_json, read_record

DOMAINS = ("target", "source")
BATCH_SIZE = 256


class ModelLoadError(ValueError):
    """A folder that does not hold a usable trained model; ``str()`` names the fix."""


@dataclass
class TrainedModel:
    """A trained classifier ready to score raw (un-normalised) images.

    Attributes:
        trial_dir: the trial folder it was loaded from.
        problem: the trial's problem name (``mmd_deepmerge``, ...).
        config: the trial's ``TrainConfig``.
        record: the trial's ``record.json``.
        networks: ``{"source": nn.Module, "target": nn.Module}`` in eval mode (the same
            module twice unless the method adapts the network to the target, e.g. AdaBN).
        stats: ``{"source": ChannelStats, "target": ChannelStats}``.
        temperature: the fitted temperature of ``calibration.json``, or ``None``.
        device: where the networks live.
    """

    trial_dir: Path
    problem: str
    config: TrainConfig
    record: dict[str, Any]
    networks: dict[str, torch.nn.Module]
    stats: dict[str, ChannelStats]
    temperature: float | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def normalize(self, images: np.ndarray | torch.Tensor, domain: str = "target"
                  ) -> torch.Tensor:
        """``(x - mean_c) / std_c`` with ``domain``'s channel statistics; float32 [N, 3, 75, 75]."""
        _check_domain(domain)
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"images must be [N, {', '.join(map(str, IMAGE_SHAPE))}], "
                             f"got {list(x.shape)}")
        stats = self.stats[domain]
        mean = torch.tensor(stats.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(stats.std, dtype=torch.float32)[:, None, None]
        return (x - mean) / std

    def logits(self, images: np.ndarray | torch.Tensor, domain: str = "target",
               normalized: bool = False, batch_size: int = BATCH_SIZE,
               progress: Any = None) -> np.ndarray:
        """Logits [N, 2] (float64) of ``domain``'s network on ``images``.

        Args:
            images: raw images [N, 3, 75, 75] in the units of the training data (or
                normalised ones with ``normalized=True``).
            domain: ``"target"`` (new observations; default) or ``"source"``.
            normalized: the images are already normalised.
            batch_size: images per forward pass.
            progress: an optional callable ``progress(n)`` told how many images each batch held.
        """
        return self._batched(images, domain, normalized, batch_size, progress, "forward", 2)

    def penultimate(self, images: np.ndarray | torch.Tensor, domain: str = "target",
                    normalized: bool = False, batch_size: int = BATCH_SIZE,
                    progress: Any = None) -> np.ndarray:
        """Penultimate-layer features [N, D] (float64) of ``domain``'s network on ``images``.

        The input of the classifier's last ``Linear`` (``models.Classifier.penultimate``);
        arguments as :meth:`logits`. :mod:`apply.ood` measures distances on them.
        """
        return self._batched(images, domain, normalized, batch_size, progress, "penultimate",
                             None)

    def _batched(self, images: np.ndarray | torch.Tensor, domain: str, normalized: bool,
                 batch_size: int, progress: Any, method: str, width: int | None) -> np.ndarray:
        """``network.<method>`` of ``domain``'s network, batch by batch, as float64 numpy."""
        _check_domain(domain)
        x = torch.as_tensor(images) if normalized else self.normalize(images, domain)
        network = self.networks[domain]
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                batch = x[start : start + batch_size].to(self.device, dtype=torch.float32)
                out.append(getattr(network, method)(batch).double().cpu())
                if progress is not None:
                    progress(len(batch))
        if out:
            return torch.cat(out).numpy()
        if width is None:  # no image: the width is the layer's, known from one empty pass
            with torch.inference_mode():
                empty = torch.zeros((0, *IMAGE_SHAPE), device=self.device)
                width = getattr(network, method)(empty).shape[1]
        return np.zeros((0, width))

    def prob_merger(self, images: np.ndarray | torch.Tensor, domain: str = "target",
                    calibrated: bool = False, **kwargs: Any) -> np.ndarray:
        """``p_merger = softmax(z / T)[:, 1]`` (``T = 1`` unless ``calibrated``), float64 [N].

        Raises:
            ModelLoadError: ``calibrated`` but the trial has no ``calibration.json``.
        """
        temperature = 1.0
        if calibrated:
            if self.temperature is None:
                raise ModelLoadError(
                    f"{self.trial_dir}: no {CALIBRATION_FILE}. Fix: run python "
                    f"apply/calibrate.py --trial {self.trial_dir}")
            temperature = self.temperature
        return softmax_merger(self.logits(images, domain, **kwargs), temperature)


def read_temperature(trial_dir: str | os.PathLike) -> float | None:
    """The temperature of ``trial_dir/calibration.json``; ``None`` when there is no file.

    Raises:
        ModelLoadError: the file is unreadable, its temperature is missing, not finite or not
            > 0, or it was fitted for another checkpoint (its ``checkpoint_sha256`` is not the
            trial's ``checkpoint.pt``'s, e.g. after the trial was retrained).
    """
    path = Path(trial_dir) / CALIBRATION_FILE
    if not path.exists():
        return None
    fix = f"Fix: rerun python apply/calibrate.py --trial {trial_dir}"
    try:
        calibration = read_json(path)
        temperature = float(calibration["temperature"])
    except Exception as exc:  # noqa: BLE001 - any unusable file is one clear error
        raise ModelLoadError(f"{path}: no usable temperature ({type(exc).__name__}). {fix}"
                             ) from None
    if not math.isfinite(temperature) or temperature <= 0:
        raise ModelLoadError(f"{path}: temperature {temperature} is not a finite number > 0. "
                             f"{fix}")
    if calibration.get("checkpoint_sha256") != checkpoint_sha256(Path(trial_dir) / CHECKPOINT):
        raise ModelLoadError(f"{path} was fitted for another checkpoint.pt (the trial was "
                             f"retrained or the file copied). {fix}")
    return temperature


def softmax_merger(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)[:, 1]`` in float64 (numerically stable)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, 1] / e.sum(axis=1)


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)}")


def load_trained(trial_dir: str | os.PathLike, device: str | torch.device = "cpu"
                 ) -> TrainedModel:
    """Load the trained networks, channel statistics and calibration of a finished trial.

    Raises:
        ModelLoadError: no ``ok`` record, no or unreadable checkpoint, or a checkpoint that
            does not match its record's configuration.
    """
    trial_dir = Path(trial_dir)
    if not trial_dir.is_dir():
        raise ModelLoadError(f"{trial_dir}: no such trial folder. Fix: pass a folder holding "
                             "record.json and checkpoint.pt (a trial, or seed_<S> of a seed study)")
    record = read_record(trial_dir)
    if record is None:
        raise ModelLoadError(f"{trial_dir}: no readable record.json. Fix: pass a finished trial "
                             "folder")
    if record.get("status") != "ok":
        raise ModelLoadError(f"{trial_dir}: the trial's status is {record.get('status')!r}, "
                             "not 'ok'. Fix: pass a trial that finished")
    path = trial_dir / CHECKPOINT
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing (a classical baseline or a copied record has "
                             "none). Fix: pass a CNN trial folder with its checkpoint")
    device = torch.device(device)
    try:
        state = read_checkpoint(path, device)
    except CheckpointError as exc:
        raise ModelLoadError(str(exc)) from None
    try:
        config = TrainConfig.from_dict(state["config"])
        def network(weights: dict) -> torch.nn.Module:
            built = create_classifier(config)
            built.load_state_dict(weights)
            return built.to(device).eval()

        source = network(state["model"])
        # Only a method with adapt_for_target (AdaBN) stores a separate target network.
        target = network(state["target_model"]) if "target_model" in state else source
        networks = {"source": source, "target": target}
        stats = {"source": ChannelStats.from_dict(state["channel_stats"]),
                 "target": ChannelStats.from_dict(state.get("target_channel_stats")
                                                  or state["channel_stats"])}
    except Exception as exc:  # noqa: BLE001 - any unusable checkpoint is one clear line
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelLoadError(f"{path}: the checkpoint does not fit its configuration's network "
                             f"({type(exc).__name__}: {first}). Fix: rerun the trial") from None
    temperature = read_temperature(trial_dir)
    return TrainedModel(trial_dir, record.get("problem", ""), config, record, networks, stats,
                        temperature, device)


def load_with_data(trial_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> tuple[TrainedModel, Any, Path]:
    """A finished trial's model and the data it was trained on: ``(model, benchmark, dir)``.

    ``data_dir`` defaults to the folder the record names; it must hold the same data
    (``galaxies.pairs.same_data`` against the record's identity).

    Raises:
        ModelLoadError: the folder holds no usable model.
        InvalidDatasetError: the data folder is missing or invalid, or is other data.
    """
    from galaxies.datasets import load_benchmark
    from galaxies.pairs import data_identity, same_data
    from galaxies.validate import InvalidDatasetError
    from training.record import recorded_identity, resolve_path

    model = load_trained(trial_dir, device)
    data_dir = Path(data_dir) if data_dir else resolve_path(model.record["data"]["dir"])
    bench = load_benchmark(data_dir)
    why = same_data(recorded_identity(model.record), data_identity(data_dir))
    if why:
        raise InvalidDatasetError(data_dir, f"is not the data {trial_dir} was trained on ({why})",
                                  "pass the trial's own data folder with --data")
    return model, bench, data_dir
