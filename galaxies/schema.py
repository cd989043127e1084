"""The HDF5 schema of one domain file (source or target), and its atomic writer.

One file holds one domain. Every array has the same first dimension N:

=============  =========  ===============  ===========================================
dataset        dtype      shape            meaning
=============  =========  ===============  ===========================================
``images``     float32    [N, 3, 75, 75]   channels in the order of ``FILTERS``
``labels``     uint8      [N]              1 = merger, 0 = non-merger
``galaxy_id``  int64      [N]              augmented copies of a galaxy share the id
``split``      uint8      [N]              0 = train, 1 = validation, 2 = test
=============  =========  ===============  ===========================================

File attributes (``REQUIRED_ATTRS``): ``domain``, ``filters``, ``pixel_scale_arcsec``,
``psf_fwhm_arcsec``, ``noise``, ``generator``, ``generator_version``, ``seed``. Writers may
add more (e.g. ``provenance``, ``limiting_sb_mag_arcsec2``, ``target_psf_scale``).
``pair_id`` (``PAIR_ID_ATTR``, optional): the same string in both files of a pair written
together by ``galaxies.pairs.pair_transaction`` (the simulator and the importer); validation
and loading refuse a pair whose ids differ (files written before it existed have none and
pass).

Files are written atomically: the data go to a temporary file in the same folder, which is
flushed to disk and renamed over the destination only once it is complete, so an interrupted
write never leaves a file that looks finished. HDF5 writes through a Python file object that
keeps the first write error from the library (:class:`_GuardedFile`), so a full disk is an
``OSError`` (``ENOSPC``) naming the destination, not a crash of the HDF5 library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from galaxies.atomic import atomic_path

FILTERS: tuple[str, ...] = ("ACS F814W", "NC F356W", "WFC3 F160W")
IMAGE_SIZE = 75
IMAGE_SHAPE: tuple[int, int, int] = (len(FILTERS), IMAGE_SIZE, IMAGE_SIZE)
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
SPLIT_NAMES: dict[int, str] = {code: name for name, code in SPLITS.items()}
LABELS: dict[int, str] = {0: "non-merger", 1: "merger"}
DOMAINS: tuple[str, ...] = ("source", "target")
#: Optional file attribute shared by the two files of a pair (see ``galaxies.pairs``).
PAIR_ID_ATTR = "pair_id"
DATASET_DTYPES: dict[str, np.dtype] = {
    "images": np.dtype(np.float32),
    "labels": np.dtype(np.uint8),
    "galaxy_id": np.dtype(np.int64),
    "split": np.dtype(np.uint8),
}
REQUIRED_ATTRS: tuple[str, ...] = (
    "domain",
    "filters",
    "pixel_scale_arcsec",
    "psf_fwhm_arcsec",
    "noise",
    "generator",
    "generator_version",
    "seed",
)


@dataclass
class DomainData:
    """All arrays and attributes of one domain file, in memory.

    Attributes:
        images: float32 [N, 3, 75, 75].
        labels: uint8 [N], 1 = merger.
        galaxy_id: int64 [N].
        split: uint8 [N], codes of ``SPLITS``.
        attrs: file attributes; values are str, numbers or sequences of them (lists and
            dicts that are not plain are stored as JSON strings).
    """

    images: np.ndarray
    labels: np.ndarray
    galaxy_id: np.ndarray
    split: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, split: str) -> DomainData:
        """Rows of one split (``"train"``, ``"val"`` or ``"test"``)."""
        mask = self.split == SPLITS[split]
        return DomainData(
            images=self.images[mask],
            labels=self.labels[mask],
            galaxy_id=self.galaxy_id[mask],
            split=self.split[mask],
            attrs=dict(self.attrs),
        )


def _attr_value(value: Any) -> Any:
    """Convert a Python value into something h5py stores as an attribute."""
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return np.array(value, dtype=h5py.string_dtype())
    return value


def decode_attr(value: Any) -> Any:
    """Turn an attribute read by h5py back into plain Python (str, float, list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [decode_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


class _GuardedFile:
    """A binary file for h5py's ``fileobj`` driver that never lets a write error reach HDF5.

    HDF5 does not recover from a failed write (``ENOSPC`` while it flushes its caches at close
    ends in tracebacks from ``__dealloc__`` and a segmentation fault). This wrapper records the
    first ``OSError`` of a write, truncate or flush, pretends success (later writes are
    dropped, reads of dropped data give zeros), and :meth:`raise_error` raises it once h5py
    has closed the file cleanly. The file is then garbage, and ``atomic_path`` removes it.
    """

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def read(self, size: int = -1) -> bytes:
        return self.handle.read(size)

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = self.handle.readinto(view)
        view[n:] = bytes(len(view) - n)  # dropped data reads as zeros
        return len(view)

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if self.error is None:
            try:
                self.handle.write(data)
            except OSError as exc:
                self.error = exc
        return size

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self.handle.truncate(size)
            except OSError as exc:
                self.error = exc
        return self.handle.tell() if size is None else size

    def flush(self) -> None:
        if self.error is None:
            try:
                self.handle.flush()
            except OSError as exc:
                self.error = exc

    def raise_error(self) -> None:
        """Raise the first write error, if any."""
        if self.error is not None:
            raise self.error


def write_domain(path: str | os.PathLike, data: DomainData) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        path: destination ``.h5`` file; its folder is created if needed.
        data: arrays with the schema's dtypes (they are cast) and the required attributes.

    Returns:
        The destination path.

    Raises:
        ValueError: if a required attribute is missing.
        OSError: the file cannot be written (disk full, permissions), naming ``path``; the
            destination keeps its old content and no temporary file remains.
    """
    path = Path(path)
    missing = [name for name in REQUIRED_ATTRS if name not in data.attrs]
    if missing:
        raise ValueError(f"cannot write {path}: missing attributes {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # HDF5 writes through a guarded Python file object: a failed write (ENOSPC) becomes an
    # ordinary OSError after a clean close; through HDF5's own driver it crashes the process.
    with atomic_path(path) as tmp, open(tmp, "wb+") as handle:
        guarded = _GuardedFile(handle)
        with h5py.File(guarded, "w") as h5:
            for name, dtype in DATASET_DTYPES.items():
                array = np.ascontiguousarray(getattr(data, name), dtype=dtype)
                chunks = (min(256, max(1, len(array))), *IMAGE_SHAPE) if name == "images" else None
                h5.create_dataset(name, data=array, chunks=chunks)
                guarded.raise_error()  # stop at the first failure (h5py closes the file)
            for key, value in data.attrs.items():
                h5.attrs[key] = _attr_value(value)
        guarded.raise_error()
        handle.flush()
    return path


def read_attrs(h5: h5py.File) -> dict[str, Any]:
    """The file attributes of an open domain file as plain Python values."""
    return {key: decode_attr(value) for key, value in h5.attrs.items()}


def load_domain_arrays(path: str | os.PathLike) -> DomainData:
    """Read a domain file into memory without validating it (see ``galaxies.validate``)."""
    with h5py.File(path, "r") as h5:
        return DomainData(
            images=h5["images"][...],
            labels=h5["labels"][...],
            galaxy_id=h5["galaxy_id"][...],
            split=h5["split"][...],
            attrs=read_attrs(h5),
        )


def domain_paths(data_dir: str | os.PathLike) -> dict[str, Path]:
    """The ``source.h5`` and ``target.h5`` paths of a data folder."""
    data_dir = Path(data_dir)
    return {domain: data_dir / f"{domain}.h5" for domain in DOMAINS}
