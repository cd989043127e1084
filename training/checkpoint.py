"""A finished trial's ``checkpoint.pt``: written once, read without running code from it.

The file is a ``torch.save`` of plain values: ``{"model": state dict, "config": dict,
"channel_stats": {...}, "target_channel_stats": {...}, "best_epoch": int}`` and, for a method
that adapts a copy of the network to the target (AdaBN), ``"target_model"``. Trial folders are
shared and moved between machines, and a pickle can run any code when it is loaded, so
:func:`read_checkpoint` loads with ``torch.load(..., weights_only=True)``: tensors, dicts,
lists, strings and numbers only. A file that needs anything else (a planted object whose
``__reduce__`` runs a command, for example) is refused with one line and nothing from it runs.
A checkpoint with non-finite weights is refused too (it would give NaN probabilities).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from galaxies.atomic import atomic_path

__all__ = ["CHECKPOINT", "CheckpointError", "checkpoint_sha256", "read_checkpoint",
           "write_checkpoint"]

CHECKPOINT = "checkpoint.pt"
#: Keys every checkpoint has.
REQUIRED = ("model", "config", "channel_stats")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (unreadable, unsafe, incomplete or non-finite)."""


def write_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` ``payload`` atomically (see the module docstring for its keys)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu"
                    ) -> dict[str, Any]:
    """The checkpoint at ``path``, its tensors on ``device``; never unpickles code.

    Raises:
        CheckpointError: a missing or unreadable file, a file holding anything but tensors
            and plain values, a missing key, or a non-finite weight (one line, with the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing. Fix: pass a finished CNN trial folder")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unreadable file is one clear error
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise CheckpointError(
                f"{path} holds more than tensors and plain values (a pickled object); it was "
                "not loaded, so nothing in it ran. Fix: use checkpoints written by galaxy-da "
                "from a source you trust, or rerun the trial") from None
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: "
                              f"{first[:200]}). Fix: rerun the trial") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise CheckpointError(f"{path} lacks {', '.join(REQUIRED)}. Fix: rerun the trial")
    for name in ("model", "target_model"):
        weights = state.get(name)
        if weights is None:
            continue
        if not isinstance(weights, dict):
            raise CheckpointError(f"{path}: {name!r} is not a state dict. Fix: rerun the trial")
        for key, tensor in weights.items():
            if (isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
                    and not bool(torch.isfinite(tensor).all())):
                raise CheckpointError(f"{path}: weight {name}.{key} is not finite (NaN or inf). "
                                      "Fix: rerun the trial")
    return state


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the checkpoint file (binds a ``calibration.json`` to the network it fits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
