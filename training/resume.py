"""The epoch checkpoint of a running trial (``resume.pt``): its fingerprint, payload and reader.

A trial started again in the same folder continues after its last completed epoch when the
file was written on the same data (``galaxies.pairs.same_data`` of the ``data`` identity it
holds; a file written before it held one is judged by its fingerprint alone) and its
fingerprint (:func:`resume_fingerprint`) matches its configuration, problem, data, device
type, compute path and torch version; otherwise it starts afresh with a one-line
:class:`ResumeWarning` saying why. The payload holds only tensors and plain values
(``torch.load(..., weights_only=True)`` reads it).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from galaxies.pairs import same_data
from training.compute_path import machine
from training.record import (
    json_safe_attrs,
)
from training.trainer import Trainer

#: The epoch checkpoint of a running trial (removed once its record is written).
RESUME = "resume.pt"
#: Layout version of ``resume.pt`` (part of its fingerprint).
RESUME_FORMAT = 1


def resume_fingerprint(trainer: Trainer, problem: str, record: dict[str, Any]) -> str:
    """SHA-256 of what a ``resume.pt`` must agree with to be continued.

    The problem, every ``TrainConfig`` field, the data's identity (both domains' HDF5
    attributes, pair id included, the rows of every split and the channel statistics computed
    from the training pixels), the device type, the resolved compute path (``precision=auto``
    resolves per machine; not whether subnormals are flushed, :mod:`training.denormals`:
    it changes only operations whose inputs or result are below 1.2e-38), the torch version
    and :data:`RESUME_FORMAT`.
    Not the data folder's path (a moved benchmark is the same data) nor the host. The
    record's ``data.identity`` is not hashed (files written before it existed stay
    resumable): :func:`usable_resume` compares it with ``same_data``.
    """
    data = record["data"]
    payload = {
        "format": RESUME_FORMAT, "problem": problem, "config": trainer.config.to_dict(),
        "source_attrs": json_safe_attrs(data["source_attrs"]),
        "target_attrs": json_safe_attrs(data["target_attrs"]),
        "channel_stats": {d: s.to_dict() for d, s in trainer.stats.items()},
        "rows": {f"{d}_{s}": len(x) for (d, s), (x, _) in trainer.data.items()},
        "device": trainer.device.type, "torch": torch.__version__,
        # auto may resolve otherwise on another machine; flushing subnormals to zero changes
        # only operations whose inputs or result are below 1.2e-38, so a checkpoint written
        # without it is continued with it (the record's ``resumed`` says which attempt flushed)
        "compute_path": {k: v for k, v in trainer.path.to_dict().items()
                         if k != "flush_denormal"},
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


def usable_resume(out_dir: Path, fingerprint: str, identity: dict[str, Any] | None = None
                  ) -> dict[str, Any] | None:
    """The ``resume.pt`` of ``out_dir`` when it continues this trial; else warn, ``None``.

    It must hold the same data as ``identity`` (``galaxies.pairs.same_data``; unchecked when
    either is missing) and match ``fingerprint``.
    """
    path = out_dir / RESUME
    try:
        resume = read_resume(out_dir)
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is not a failure
        warnings.warn(f"{path} cannot be read ({type(exc).__name__}: {exc}); the trial starts "
                      "from epoch 1 and will overwrite it", ResumeWarning, stacklevel=3)
        return None
    if resume is None:
        return None
    why = same_data(resume.get("data"), identity) if isinstance(resume, dict) else None
    if why:
        warnings.warn(f"{path} was written on other data ({why}); the trial starts from "
                      "epoch 1 and will overwrite it", ResumeWarning, stacklevel=3)
        return None
    if not isinstance(resume, dict) or resume.get("fingerprint") != fingerprint:
        warnings.warn(f"{path} belongs to another configuration, data, device or torch version "
                      "(its fingerprint differs); the trial starts from epoch 1 and will "
                      "overwrite it", ResumeWarning, stacklevel=3)
        return None
    return resume


def resume_payload(trainer: Trainer, fit: dict[str, Any], history: list[dict[str, Any]],
                   fingerprint: str, problem: str, elapsed_s: float,
                   resumed: list[dict[str, Any]], on_epoch: Any = None,
                   data: dict[str, Any] | None = None,
                   machine_name: str | None = None) -> dict[str, Any]:
    """The content of ``resume.pt`` after epoch ``fit["epoch"]``.

    ``{format, fingerprint, problem, config, epoch, trainer (:meth:`Trainer.state_dict`), fit
    (the plain values of :class:`training.loop.FitState`: best epoch, loss and weights
    (``"model"`` when they are the epoch's own), patience counter, done, stopped, peak lr),
    history, elapsed_s, resumed, on_epoch (the callback's ``state_dict()`` or ``None``),
    data (the record's ``data.identity``), host, written_at, machine and compute_path (the
    attempt's own: a resumed record names them per attempt; ``machine_name`` is the record's
    ``machine``, so the CPU is not described again every epoch)}``; only tensors and plain
    Python values (``torch.load(..., weights_only=True)`` reads it).
    """
    saver = getattr(on_epoch, "state_dict", None)
    return {
        "format": RESUME_FORMAT, "fingerprint": fingerprint, "problem": problem,
        "config": trainer.config.to_dict(), "epoch": fit["epoch"],
        "trainer": trainer.state_dict(),
        "fit": fit,
        "history": list(history), "elapsed_s": elapsed_s, "resumed": list(resumed),
        "on_epoch": saver() if callable(saver) else None, "data": data,
        "host": platform.node(), "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": machine_name or machine(trainer.device),
        "compute_path": trainer.path.to_dict(),
    }


def remove_resume(out_dir: Path) -> None:
    """Remove ``resume.pt`` and any temporary file a killed write of it left."""
    for path in out_dir.glob(RESUME + ".tmp*"):
        path.unlink(missing_ok=True)
    (out_dir / RESUME).unlink(missing_ok=True)


