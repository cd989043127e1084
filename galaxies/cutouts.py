"""Read cut-outs to classify, in the four formats a user brings: HDF5, .npy, FITS cube, FITS folder.

Every reader returns :class:`Cutouts`: raw images [N, 3, 75, 75] (float32, in the filters of
:data:`galaxies.schema.FILTERS`: ACS F814W, NC F356W, WFC3 F160W), one id per object, where it
came from, and a per-object ``status`` (``"ok"`` or why the object was not classified).

- **HDF5** (``.h5``/``.hdf5``): a dataset ``images`` [N, 3, 75, 75] as written by
  ``galaxies/simulate.py`` or ``galaxies/import_real.py`` (the schema of docs/CONTRACTS.md);
  ``galaxy_id`` (ids), ``split`` and ``labels`` are used when present but not required, so a
  file of unlabelled observations works too. ``split=`` keeps one split of a schema file.
- **.npy**: [N, 3, 75, 75] or channels-last [N, 75, 75, 3]; ids are the row numbers.
- **FITS cube** (``.fits``/``.fit``/``.fits.gz`` file): either one image HDU holding
  [N, 3, 75, 75] (or [N, 75, 75, 3]), or three image HDUs of [N, 75, 75], one per filter, in
  the order of ``FILTERS`` or named by ``EXTNAME``/``FILTER`` (``F814W``, ``F356W``,
  ``F160W``); a binary table HDU with a column ``OBJECT_ID``/``ID``/``NAME`` gives the ids.
- **FITS folder**: one file per object (``*.fits``, ``*.fit``, ``*.fits.gz``), holding
  [3, 75, 75] in one HDU or three [75, 75] HDUs; the id is the file name without extension
  (the whole file name where two files share one, e.g. ``a.fits`` and ``a.fit``). Anything
  but a regular file (a FIFO, a socket) is not read.

Three filter HDUs are taken in the order of ``FILTERS`` when none names a filter, reordered
when each names a different one, and refused when the names are partial or repeated.

A whole-file format with a bad shape, a wrong number of filters, NaN/inf pixels or an
unreadable file is refused with one :class:`galaxies.validate.InvalidDatasetError` naming
the problem and the fix. In a folder, a single bad file does not stop the others: its row gets
``status`` = the reason (e.g. ``"bad: NaN, inf or |pixel| > 1e+10 ..."``) and zero pixels,
and it must not be classified (:func:`apply.predict.predict_catalogue` leaves its
probability empty).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxies.schema import FILTERS, IMAGE_SHAPE, SPLITS
from galaxies.validate import MAX_ABS_PIXEL, InvalidDatasetError

FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fts")
HDF5_SUFFIXES = (".h5", ".hdf5")
ID_COLUMNS = ("OBJECT_ID", "ID", "NAME", "OBJID")
CHUNK_ROWS = 4096
SHAPE_TEXT = f"[N, {', '.join(map(str, IMAGE_SHAPE))}] (or channels-last [N, 75, 75, 3])"
OK = "ok"


@dataclass
class Cutouts:
    """Images to classify and what identifies each one.

    Attributes:
        images: float32 [N, 3, 75, 75] raw pixels (zeros where ``status != "ok"``).
        object_id: one string id per object.
        file: the file each object was read from (its name; relative to a folder input).
        row: the object's row in that file (0 for one-object files).
        status: ``"ok"``, or why the object cannot be classified.
        format: ``"hdf5"``, ``"npy"``, ``"fits-cube"`` or ``"fits-folder"``.
        columns: extra per-object columns kept from the input (HDF5: ``galaxy_id``,
            ``split``, ``label``), as arrays of length N.
    """

    images: np.ndarray
    object_id: list[str]
    file: list[str]
    row: np.ndarray
    status: list[str]
    format: str
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.object_id)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the objects that can be classified."""
        return np.array([s == OK for s in self.status], dtype=bool)


def _channels_first(images: np.ndarray, path: Path, what: str = "images") -> np.ndarray:
    if images.ndim == 4 and tuple(images.shape[1:]) == IMAGE_SHAPE:
        return images
    if images.ndim == 4 and tuple(images.shape[1:]) == (*IMAGE_SHAPE[1:], IMAGE_SHAPE[0]):
        return images.transpose(0, 3, 1, 2)
    filters = images.shape[1] if images.ndim == 4 else None
    if images.ndim == 4 and images.shape[2:] == IMAGE_SHAPE[1:] and filters != IMAGE_SHAPE[0]:
        problem = (f"{what} have {filters} filters, the models need {IMAGE_SHAPE[0]} "
                   f"({', '.join(FILTERS)})")
    else:
        problem = f"{what} have shape {list(images.shape)}, expected {SHAPE_TEXT}"
    raise InvalidDatasetError(path, problem, "pass 75x75 cut-outs in the three filters "
                              f"{', '.join(FILTERS)}, stacked as {SHAPE_TEXT}")


def _check_pixels(images: np.ndarray, path: Path) -> np.ndarray:
    """float32 copy of ``images``; refuses complex, non-numeric, NaN/inf, non-physical pixels.

    Non-physical: ``|x| > galaxies.validate.MAX_ABS_PIXEL``, the data layer's limit too.
    """
    if np.iscomplexobj(images) or not np.issubdtype(images.dtype, np.number):
        raise InvalidDatasetError(path, f"pixels have dtype {images.dtype}, not real numbers",
                                  "write real-valued (float) images")
    if len(images) == 0:
        raise InvalidDatasetError(path, "holds no images", "pass a file with at least one image")
    out = np.empty(images.shape, dtype=np.float32)
    bad_rows: list[int] = []
    for start in range(0, len(images), CHUNK_ROWS):
        chunk = np.asarray(images[start : start + CHUNK_ROWS], dtype=np.float64)
        finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        too_big = np.abs(np.where(np.isfinite(chunk), chunk, 0)).reshape(len(chunk), -1).max(
            axis=1) > MAX_ABS_PIXEL
        bad_rows += (np.flatnonzero(~finite | too_big) + start).tolist()
        out[start : start + CHUNK_ROWS] = chunk
    if bad_rows:
        shown = ", ".join(map(str, bad_rows[:5])) + (", ..." if len(bad_rows) > 5 else "")
        raise InvalidDatasetError(path, f"NaN, inf or |pixel| > {MAX_ABS_PIXEL:g} in "
                                  f"{len(bad_rows)} image(s) "
                                  f"(rows {shown})", "mask or drop those images before "
                                  "classifying (or give each object its own FITS file, so "
                                  "that bad ones are flagged and the rest classified)")
    return out


def _cutouts(images: np.ndarray, ids: list[str], path: Path, fmt: str,
             columns: dict[str, np.ndarray] | None = None) -> Cutouts:
    n = len(images)
    if len(ids) != n:
        raise InvalidDatasetError(path, f"{len(ids)} ids for {n} images",
                                  "give exactly one id per image")
    if len(set(ids)) != n:
        raise InvalidDatasetError(path, "object ids are not unique",
                                  "give every object its own id")
    return Cutouts(images, ids, [path.name] * n, np.arange(n), [OK] * n, fmt, columns or {})


def read_hdf5(path: Path, split: str | None = None) -> Cutouts:
    """An HDF5 file with ``images`` [N, 3, 75, 75] (``galaxy_id``/``split``/``labels`` optional)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if "images" not in h5:
                raise InvalidDatasetError(path, f"no 'images' dataset (found: {sorted(h5)})",
                                          "write the images to a dataset called 'images'")
            images = _channels_first(np.asarray(h5["images"][()]), path)
            extra = {key: np.asarray(h5[key][()]) for key in ("galaxy_id", "split", "labels")
                     if key in h5}
            rows = np.arange(len(images))
            if split is not None:
                if split not in SPLITS:
                    raise InvalidDatasetError(path, f"unknown split {split!r}",
                                              f"use one of {', '.join(SPLITS)}")
                if "split" not in extra:
                    raise InvalidDatasetError(path, "has no 'split' dataset",
                                              "drop --split to classify every image")
                rows = np.flatnonzero(extra["split"] == SPLITS[split])
                if rows.size == 0:
                    raise InvalidDatasetError(path, f"split {split} has no rows",
                                              "pick another split")
            pixels = _check_pixels(images[rows], path)
    except InvalidDatasetError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidDatasetError(path, f"unreadable HDF5 file ({exc})",
                                  "check that the file is complete and is HDF5") from exc
    for key, values in extra.items():
        if len(values) != len(images):
            raise InvalidDatasetError(path, f"'{key}' has {len(values)} rows for "
                                      f"{len(images)} images", "write one value per image")
    columns = {("label" if k == "labels" else k): v[rows] for k, v in extra.items()}
    if "split" in columns:
        names = {v: k for k, v in SPLITS.items()}
        columns["split"] = np.array([names.get(int(s), str(s)) for s in columns["split"]])
    if "galaxy_id" in columns:
        gid = columns["galaxy_id"]
        ids = [str(g) for g in gid]
        if len(set(ids)) != len(ids):  # augmented copies share a galaxy id
            ids = [f"{g}_{r}" for g, r in zip(gid, rows, strict=True)]
    else:
        ids = [str(r) for r in rows]
    out = _cutouts(pixels, ids, path, "hdf5", columns)
    out.row = rows
    return out


def read_npy(path: Path) -> Cutouts:
    """A ``.npy`` array [N, 3, 75, 75] or [N, 75, 75, 3]; ids are the row numbers."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty (zero-byte) file
        raise InvalidDatasetError(path, f"unreadable .npy file ({exc or 'empty file'})",
                                  "save the images with numpy.save (no pickled objects)") from exc
    images = _check_pixels(_channels_first(array, path), path)
    return _cutouts(images, [str(i) for i in range(len(images))], path, "npy")


def _filter_name(hdu) -> str:
    header = hdu.header
    for key in ("FILTER", "EXTNAME"):
        value = str(header.get(key, "")).strip().upper()
        for name in FILTERS:
            if name.split()[-1].upper() in value.split() or value.endswith(name.split()[-1]):
                return name
    return ""


def _fits_images(hdus, path: Path, per_object: bool) -> tuple[np.ndarray, list[str] | None]:
    """Images of a FITS file: one 4-D (3-D per object) HDU, or one HDU per filter."""
    from astropy.io.fits import BinTableHDU, TableHDU

    arrays = [h for h in hdus if getattr(h, "is_image", False) and h.data is not None]
    ids = None
    for hdu in hdus:
        if isinstance(hdu, (BinTableHDU, TableHDU)):
            names = {c.upper(): c for c in hdu.columns.names}
            column = next((names[c] for c in ID_COLUMNS if c in names), None)
            if column is not None:
                ids = [str(v).strip() for v in hdu.data[column]]
    if not arrays:
        raise InvalidDatasetError(path, "holds no image HDU", "write the pixels to image HDUs")
    stacked_ndim = 3 if per_object else 4
    whole = [h for h in arrays if h.data.ndim == stacked_ndim]
    if whole:
        data = np.asarray(whole[0].data)
        return (data[None] if per_object else data), ids
    if len(arrays) != len(FILTERS):
        raise InvalidDatasetError(
            path, f"{len(arrays)} image HDU(s) of shape {list(arrays[0].data.shape)}; the models "
            f"need {len(FILTERS)} filters ({', '.join(FILTERS)})",
            "write one image HDU per filter, or one HDU holding all three")
    names = [_filter_name(h) for h in arrays]
    if not any(names):  # no HDU names a filter: the order of FILTERS
        ordered = arrays
    elif sorted(names) == sorted(FILTERS):
        ordered = [arrays[names.index(f)] for f in FILTERS]
    else:
        shown = ", ".join(f"HDU {i}: {n or 'no filter'}" for i, n in enumerate(names))
        raise InvalidDatasetError(
            path, f"the image HDUs do not name the {len(FILTERS)} filters once each ({shown}), "
            "so the channel order is unknown",
            f"name each HDU by one filter ({', '.join(FILTERS)}) in FILTER or EXTNAME, or "
            "name none of them and write them in that order")
    shapes = {tuple(h.data.shape) for h in ordered}
    if len(shapes) != 1:
        raise InvalidDatasetError(path, f"the filter HDUs differ in shape ({sorted(shapes)})",
                                  "give every filter the same cut-out size")
    data = np.stack([np.asarray(h.data) for h in ordered], axis=-3)
    return (data[None] if per_object else data), ids


def read_fits_cube(path: Path) -> Cutouts:
    """A multi-extension FITS file holding many objects (see the module docstring)."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdus:
            data, ids = _fits_images(hdus, path, per_object=False)
            images = _check_pixels(_channels_first(data, path), path)
    except InvalidDatasetError:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise InvalidDatasetError(path, f"unreadable FITS file ({exc})",
                                  "check that the file is complete and is FITS") from exc
    return _cutouts(images, ids or [str(i) for i in range(len(images))], path, "fits-cube")


def _is_fits(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(FITS_SUFFIXES)


def _stem(name: str) -> str:
    """A FITS file's name without its FITS suffix (``a.fits.gz`` -> ``a``)."""
    for suffix in FITS_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_fits_folder(folder: Path) -> Cutouts:
    """One FITS file per object; a bad file becomes a flagged row, the others are read."""
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    files = sorted(p for p in folder.iterdir() if _is_fits(p))
    if not files:
        raise InvalidDatasetError(folder, "holds no FITS files (*.fits, *.fit, *.fits.gz)",
                                  "pass a folder of per-object FITS cut-outs, or a single "
                                  ".h5/.npy/.fits file")
    images = np.zeros((len(files), *IMAGE_SHAPE), dtype=np.float32)
    stems = [_stem(p.name) for p in files]
    # Two files of one stem (a.fits, a.fit): each keeps its whole file name as its id.
    ids = [p.name if stems.count(stem) > 1 else stem for p, stem in zip(files, stems, strict=True)]
    status = []
    for i, path in enumerate(files):
        try:
            with warnings.catch_warnings():  # a damaged file is flagged below, not warned
                warnings.simplefilter("ignore", VerifyWarning)
                with fits.open(path, memmap=False) as hdus:
                    data, _ = _fits_images(hdus, path, per_object=True)
                    images[i] = _check_pixels(_channels_first(data, path), path)[0]
            status.append(OK)
        except InvalidDatasetError as exc:
            status.append(f"bad: {exc.problem}")
        except (OSError, ValueError, TypeError, IndexError) as exc:
            status.append(f"bad: unreadable FITS file ({type(exc).__name__}: {exc})")
    return Cutouts(images, ids, [p.name for p in files], np.zeros(len(files), dtype=np.int64),
                   status, "fits-folder")


def read_cutouts(path: str | os.PathLike, split: str | None = None) -> Cutouts:
    """Read ``path`` in whichever of the four formats it is (by suffix; a folder = FITS files).

    Raises:
        InvalidDatasetError: missing path, unknown format, or a bad whole-file input.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidDatasetError(path, "does not exist", "check the path")
    if split is not None and not path.name.lower().endswith(HDF5_SUFFIXES):
        raise InvalidDatasetError(path, "--split applies to HDF5 files only",
                                  "drop --split for this input")
    if path.is_dir():
        return read_fits_folder(path)
    if not path.is_file():  # reading a FIFO would wait forever, a device never end
        raise InvalidDatasetError(path, "is not a regular file (a FIFO, socket or device)",
                                  "pass the .h5/.npy/.fits file itself, or a folder")
    name = path.name.lower()
    if name.endswith(HDF5_SUFFIXES):
        return read_hdf5(path, split)
    if name.endswith(".npy"):
        return read_npy(path)
    if name.endswith(FITS_SUFFIXES):
        return read_fits_cube(path)
    raise InvalidDatasetError(path, "unknown image format",
                              "pass a .h5/.hdf5, .npy or .fits file, or a folder of "
                              "per-object .fits files")
