"""Torch-side view of a benchmark: validated arrays in memory, normalisation, paired batches.

Normalisation statistics are computed on the SOURCE TRAIN split only and applied to every
split of both domains, so nothing about the target or the test rows leaks into training.
With ``normalization = "per_domain"`` (:func:`domain_stats`) the target is standardised with
its own TRAIN split's statistics instead (unlabelled images only), as the authors' code does.

Typical use::

    bench = load_benchmark(data_dir)
    xs, ys = split_tensors(bench.source, "train", bench.stats)
    xt, _ = split_tensors(bench.target, "train", bench.stats)   # target labels stay unused
    for xs_b, ys_b, xt_b in PairedBatches(xs, ys, xt, 128, torch.Generator().manual_seed(1)):
        ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxies.schema import FILTERS, SPLITS, DomainData, domain_paths
from galaxies.validate import InvalidDatasetError, validate_pair

STATS_CHUNK_ROWS = 1024


class ConstantChannelError(ValueError):
    """A channel whose standard deviation is 0; ``channels`` lists their indices."""

    def __init__(self, channels: list[int]) -> None:
        self.channels = channels
        super().__init__(f"channel(s) {channels} are constant")


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation used to normalise images."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready ``{"mean": [...], "std": [...]}``."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: Mapping[str, list[float]]) -> ChannelStats:
        """Inverse of ``to_dict``."""
        return cls(
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
        )


def channel_stats(images: np.ndarray, rows: np.ndarray | None = None) -> ChannelStats:
    """Per-channel mean and (population) std, accumulated in float64, chunk by chunk.

    Pass the SOURCE TRAIN images only (``load_benchmark`` does): the same statistics then
    normalise both domains.

    Args:
        images: [N, C, H, W] array.
        rows: optional row indices to use instead of all rows (avoids copying a split).

    Returns:
        The statistics.

    Raises:
        ValueError: no rows; ``ConstantChannelError`` (a ``ValueError``) when a channel is
            constant (its std would be 0).
    """
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    if len(rows) == 0:
        raise ValueError("cannot compute channel statistics of zero images")
    chunks = [rows[i : i + STATS_CHUNK_ROWS] for i in range(0, len(rows), STATS_CHUNK_ROWS)]
    n_pixels = len(rows) * int(np.prod(images.shape[2:]))
    total = sum(images[c].astype(np.float64).sum(axis=(0, 2, 3)) for c in chunks)
    mean = total / n_pixels
    squares = sum(
        ((images[c].astype(np.float64) - mean[:, None, None]) ** 2).sum(axis=(0, 2, 3))
        for c in chunks
    )
    std = np.sqrt(squares / n_pixels)
    if np.any(std == 0):
        raise ConstantChannelError(np.flatnonzero(std == 0).tolist())
    return ChannelStats(mean=tuple(mean.tolist()), std=tuple(std.tolist()))


@dataclass
class Benchmark:
    """Both domains of a benchmark folder plus the source-train normalisation."""

    source: DomainData
    target: DomainData
    stats: ChannelStats
    data_dir: Path


def _train_stats(data: DomainData, path: Path) -> ChannelStats:
    """``channel_stats`` of a domain's TRAIN split; a constant channel names the file."""
    try:
        return channel_stats(data.images, rows=np.flatnonzero(data.split == SPLITS["train"]))
    except ConstantChannelError as exc:
        names = ", ".join(f"{c} ({FILTERS[c]})" for c in exc.channels)
        raise InvalidDatasetError(
            path,
            f"channel {names} is constant over the train split (std 0), so it cannot be "
            "standardised",
            "every filter needs varying pixel values in the training images: check that "
            "channel's input",
        ) from None


def load_benchmark(data_dir: str | os.PathLike) -> Benchmark:
    """Load and validate ``data_dir/source.h5`` and ``data_dir/target.h5``.

    Raises:
        InvalidDatasetError: a file is missing or invalid, the two files disagree on
            their domain names, filters or image shape, or were not written together
            (``pair_id``, :func:`galaxies.validate.validate_pair`), or a source channel is
            constant over the train split.
    """
    data_dir = Path(data_dir)
    data = validate_pair(data_dir)
    source, target = data["source"], data["target"]
    stats = _train_stats(source, domain_paths(data_dir)["source"])
    return Benchmark(source=source, target=target, stats=stats, data_dir=data_dir)


def domain_stats(bench: Benchmark, normalization: str = "source") -> dict[str, ChannelStats]:
    """The channel statistics that normalise each domain.

    Args:
        bench: the loaded benchmark.
        normalization: ``"source"``: both domains with the source-train statistics (the
            default); ``"per_domain"``: each domain with its own *training* split's (the
            target's from its unlabelled training images; no validation or test row is read).

    Raises:
        ValueError: an unknown ``normalization``.
        InvalidDatasetError: ``per_domain`` and a target channel is constant over its train
            split.
    """
    if normalization == "source":
        return {"source": bench.stats, "target": bench.stats}
    if normalization == "per_domain":
        target = _train_stats(bench.target, domain_paths(bench.data_dir)["target"])
        return {"source": bench.stats, "target": target}
    raise ValueError(f"unknown normalization {normalization!r}; use 'source' or 'per_domain'")


def split_tensors(
    data: DomainData, split: str, stats: ChannelStats
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 images [n, 3, 75, 75] and int64 labels [n] of one split."""
    mask = data.split == SPLITS[split]
    images = torch.from_numpy(np.ascontiguousarray(data.images[mask], dtype=np.float32))
    mean = torch.tensor(stats.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(stats.std, dtype=torch.float32)[:, None, None]
    images.sub_(mean).div_(std)
    labels = torch.from_numpy(data.labels[mask].astype(np.int64))
    return images, labels


class PairedBatches:
    """Source batches with labels paired with unlabelled target batches, lean and seeded.

    One epoch per ``iter()``: the source rows are visited once each in the order of a
    ``torch.randperm`` drawn from ``generator``; each source batch is paired with a target
    batch of the same size, drawn from a target permutation that is reshuffled and cycled
    whenever it runs out. No DataLoader; whole tensors stay where they are (CPU or GPU).
    Target labels are never given to it.

    Args:
        source_x: source images [N_s, ...].
        source_y: source labels [N_s].
        target_x: target images [N_t, ...], or ``None`` for source-only training (no-DA), in
            which case ``None`` stands in for every target batch and no target row is gathered.
        batch_size: source (and target) rows per batch.
        generator: CPU ``torch.Generator``; the same seed gives the same batches.
        max_batches: cap on batches per epoch (``None`` or 0 = a full pass over the source).
    """

    def __init__(
        self,
        source_x: torch.Tensor,
        source_y: torch.Tensor,
        target_x: torch.Tensor | None,
        batch_size: int,
        generator: torch.Generator,
        max_batches: int | None = None,
    ) -> None:
        if len(source_x) != len(source_y):
            raise ValueError(f"{len(source_x)} source images but {len(source_y)} labels")
        if len(source_x) == 0 or (target_x is not None and len(target_x) == 0):
            raise ValueError("source and target need at least one row each")
        if batch_size < 1 or (max_batches is not None and max_batches < 0):
            raise ValueError(f"bad batch_size={batch_size} or max_batches={max_batches}")
        self.source_x, self.source_y, self.target_x = source_x, source_y, target_x
        self.batch_size = batch_size
        self.generator = generator
        self.max_batches = max_batches or None
        self._target_order = torch.empty(0, dtype=torch.long)
        self._target_pos = 0

    def state_dict(self) -> dict[str, Any]:
        """Where the target permutation stands (kept between epochs), for ``resume.pt``."""
        return {"target_order": self._target_order.cpu(), "target_pos": self._target_pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        order = state["target_order"]
        if self.target_x is not None:
            order = order.to(self.target_x.device)
        self._target_order, self._target_pos = order, int(state["target_pos"])

    def __len__(self) -> int:
        n = math.ceil(len(self.source_x) / self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def _target_indices(self, k: int) -> torch.Tensor:
        """The next ``k`` target rows, reshuffling whenever the permutation runs out."""
        parts = []
        while k > 0:
            if self._target_pos == len(self._target_order):
                # Drawn on the CPU generator (same batches on every device), moved once per
                # permutation: per-batch host-to-device index copies would block on the GPU.
                order = torch.randperm(len(self.target_x), generator=self.generator)
                self._target_order = order.to(self.target_x.device)
                self._target_pos = 0
            take = min(k, len(self._target_order) - self._target_pos)
            parts.append(self._target_order[self._target_pos : self._target_pos + take])
            self._target_pos += take
            k -= take
        return torch.cat(parts)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        order = torch.randperm(len(self.source_x), generator=self.generator)
        order = order.to(self.source_x.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            target = None
            if self.target_x is not None:
                target = self.target_x[self._target_indices(len(idx))]
            yield self.source_x[idx], self.source_y[idx.to(self.source_y.device)], target
