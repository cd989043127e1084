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
add more (e.g. ``provenance``, ``limiting_sb_mag_arcsec2``).

Files are written atomically: the data go to a temporary file in the same folder, which is
renamed over the destination only once it is complete, so an interrupted write never leaves
a file that looks finished.
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


def write_domain(path: str | os.PathLike, data: DomainData) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        path: destination ``.h5`` file; its folder is created if needed.
        data: arrays with the schema's dtypes (they are cast) and the required attributes.

    Returns:
        The destination path.

    Raises:
        ValueError: if a required attribute is missing.
    """
    path = Path(path)
    missing = [name for name in REQUIRED_ATTRS if name not in data.attrs]
    if missing:
        raise ValueError(f"cannot write {path}: missing attributes {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for name, dtype in DATASET_DTYPES.items():
            array = np.ascontiguousarray(getattr(data, name), dtype=dtype)
            chunks = (min(256, max(1, len(array))), *IMAGE_SHAPE) if name == "images" else None
            h5.create_dataset(name, data=array, chunks=chunks)
        for key, value in data.attrs.items():
            h5.attrs[key] = _attr_value(value)
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
