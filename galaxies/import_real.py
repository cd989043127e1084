r"""Import the published DeepMerge images into the project's HDF5 schema.

The paper's data are published in two forms:

* ``.npy`` arrays (Zenodo / the authors' Drive; e.g.
  ``SB_version_00_numpy_3_filters_pristine_SB00_augmented_3FILT.npy`` with labels
  ``..._pristine_SB00_augmented_y_3FILT.npy`` for the source, ``..._noisy_SB25_augmented_...``
  for the target): images [N, 3, 75, 75] (channels-first; channels-last [N, 75, 75, 3] is
  accepted too) and labels [N] of 0/1.
* FITS files of the MAST "deepmerge" high-level science product: the images in extension 0 or
  1, the labels in the next extension (an image or a one-column table).

Both domains must hold [N, 3, 75, 75] real-valued images (so source and target always agree
in shape); any other shape, complex or non-numeric pixels, NaN/inf or non-physical pixels
(``|x| > galaxies.validate.MAX_ABS_PIXEL``), labels other than 0/1 or a label count that
differs from the image count stop the import before anything is written.

Writing is one transaction (``galaxies.pairs.pair_transaction``): both files are written
into a temporary folder, validated there (a split without rows, a source split with one
class, ...), and only then replace the pair in ``--out``; on any failure the previous files
stay byte-identical and no empty folder is left. Both files carry the same ``pair_id``.

Galaxy ids. The published sets were augmented (rotations, flips) before they were saved, so
which rows are copies of one galaxy is not recorded. By default every row is its own galaxy
and splitting is per row - which is also what the authors did, so their splits leak
augmented copies between train, val and test. With ``--augmented-copies K`` (K > 1) rows are
grouped by their exact multiset of pixel values, which 90-degree rotations and flips leave
unchanged; this finds copies made that way (not copies that were resampled or re-noised
after augmentation), and a group larger than K is an error. The attribute ``id_grouping``
records what was done and how many groups were found.

Splits are drawn per galaxy id, stratified by label, deterministically from ``--seed``.

Example::

    python galaxies/import_real.py \
        --source-images SB_version_00_numpy_3_filters_pristine_SB00_augmented_3FILT.npy \
        --source-labels SB_version_00_numpy_3_filters_pristine_SB00_augmented_y_3FILT.npy \
        --target-images SB_version_00_numpy_3_filters_noisy_SB25_augmented_3FILT.npy \
        --target-labels SB_version_00_numpy_3_filters_noisy_SB25_augmented_y_3FILT.npy \
        --out data/deepmerge-published
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from galaxies.atomic import write_error_message
from galaxies.pairs import compute_pair_id, pair_transaction, refuse_existing_pair
from galaxies.schema import FILTERS, IMAGE_SHAPE, DomainData, domain_paths
from galaxies.validate import CHUNK_ROWS, MAX_ABS_PIXEL, InvalidDatasetError

GENERATOR = "galaxies.import_real"
GENERATOR_VERSION = "1.0"
# Documented defaults for the published set (override with the CLI options): the DeepMerge
# images are 75x75 cut-outs; these values are approximate (the PSF differs per filter), so
# record what you know of your copy if it differs.
DEFAULT_PIXEL_SCALE_ARCSEC = 0.06
DEFAULT_PSF_FWHM_ARCSEC = 0.15
DEFAULT_NOISE = {"source": "as published (pristine)", "target": "as published (SB25 noisy)"}


@dataclass
class RawDomain:
    """Images and labels of one domain as read from the published files."""

    images: np.ndarray  # [N, 3, 75, 75], possibly a memory-mapped or transposed view
    labels: np.ndarray  # [N] uint8
    inputs: list[Path]  # the files read
    format: str


def check_real(array: np.ndarray, path: Path, what: str) -> None:
    """Refuse arrays that are not real numbers (complex, object, strings, records)."""
    kind = np.dtype(array.dtype).kind
    if kind not in "biuf" or array.dtype.names:
        extra = " (the imaginary part would be dropped)" if kind == "c" else ""
        raise InvalidDatasetError(
            path,
            f"{what} have dtype {array.dtype}, expected real numbers{extra}",
            f"save the {what} as a float or integer array (for complex data, decide which "
            "real quantity to import first)",
        )


def channels_first(images: np.ndarray, path: Path) -> np.ndarray:
    """Return [N, 3, 75, 75] for channels-first or channels-last input, else raise."""
    if images.ndim == 4 and images.shape[1:] == IMAGE_SHAPE:
        return images
    channels_last = (*IMAGE_SHAPE[1:], IMAGE_SHAPE[0])
    if images.ndim == 4 and images.shape[1:] == channels_last:
        return images.transpose(0, 3, 1, 2)
    raise InvalidDatasetError(
        path,
        f"images have shape {images.shape}, expected [N, 3, 75, 75] or [N, 75, 75, 3]",
        "pass the 3-filter 75x75 image array (not the raw or resized large images)",
    )


def check_images(images: np.ndarray, path: Path) -> None:
    """Reject no images, NaN/inf and non-physical pixels (a memory-mapped array in chunks)."""
    if len(images) == 0:
        raise InvalidDatasetError(path, "holds no images (an array of length 0)",
                                  "pass the array with the images")
    for start in range(0, len(images), CHUNK_ROWS):
        chunk = images[start : start + CHUNK_ROWS]
        finite = np.isfinite(chunk)
        if not finite.all():
            rows = np.flatnonzero(~finite.reshape(len(finite), -1).all(axis=1)) + start
            raise InvalidDatasetError(
                path,
                f"images contain NaN or inf pixels (first in row {rows[0]})",
                "use the published array unchanged, or drop the bad rows first",
            )
        huge = np.abs(chunk) > MAX_ABS_PIXEL
        if huge.any():
            rows = np.flatnonzero(huge.reshape(len(huge), -1).any(axis=1)) + start
            raise InvalidDatasetError(
                path,
                f"images contain pixels with |value| > {MAX_ABS_PIXEL:g} (first in row "
                f"{rows[0]}: {float(np.abs(chunk[rows[0] - start]).max()):.3g}), not physical "
                "fluxes",
                "check the array's units and content (uninitialised or overflowed values)",
            )


def check_labels(labels: np.ndarray, n_images: int, path: Path) -> np.ndarray:
    """Labels as uint8 [N] of 0/1; reject other values and length mismatches."""
    labels = np.asarray(labels)
    check_real(labels, path, "labels")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise InvalidDatasetError(
            path, f"labels have shape {labels.shape}, expected [N]", "pass 1-D labels"
        )
    if len(labels) != n_images:
        raise InvalidDatasetError(
            path,
            f"{len(labels)} labels for {n_images} images",
            "pair each image file with its own label file",
        )
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        raise InvalidDatasetError(
            path,
            f"labels must be 0 or 1, found {sorted(set(np.unique(labels[bad]).tolist()))[:5]}",
            "use 1 for mergers and 0 for non-mergers",
        )
    return labels.astype(np.uint8)


def load_npy(images_path: Path, labels_path: Path) -> RawDomain:
    """Memory-map an image ``.npy`` and read its label ``.npy``."""
    for path in (images_path, labels_path):
        if not path.is_file():
            raise InvalidDatasetError(path, "file does not exist", "check the path")
    arrays = []
    for path, mmap in ((images_path, "r"), (labels_path, None)):
        try:
            arrays.append(np.load(path, mmap_mode=mmap, allow_pickle=False))
        except (ValueError, EOFError, OSError) as err:  # object arrays (need pickle), empty
            # or truncated files: refused
            raise InvalidDatasetError(
                path, f"not a readable numeric .npy array ({err})",
                "save it with numpy as a plain float or integer array (not an object array), "
                "or download it again",
            ) from None
    images, labels = arrays
    check_real(images, images_path, "images")
    images = channels_first(images, images_path)
    check_images(images, images_path)
    labels = check_labels(labels, len(images), labels_path)
    return RawDomain(images, labels, [images_path, labels_path], "npy")


def _fits_arrays(path: Path) -> list[np.ndarray | None]:
    """The data of every HDU of a FITS file (``None`` for empty ones)."""
    from astropy.io import fits

    if not path.is_file():
        raise InvalidDatasetError(path, "file does not exist", "check the path")
    try:
        with warnings.catch_warnings():  # a truncated file is refused below, not warned about
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdus:
                return [hdu.data for hdu in hdus]
    except (OSError, ValueError, TypeError, EOFError) as err:  # ValueError: truncated data
        raise InvalidDatasetError(
            path, f"not a readable FITS file, truncated or damaged ({err})",
            "download it again completely"
        ) from None


def _fits_domain(images, images_path: Path, labels, labels_path: Path) -> RawDomain:
    """Check FITS image and label data (big-endian, maybe a table) and wrap them."""
    if labels.dtype.names:  # a table: use its first column
        labels = np.asarray(labels[labels.dtype.names[0]])
    check_real(np.asarray(images), images_path, "images")
    check_real(np.asarray(labels), labels_path, "labels")
    images = channels_first(np.asarray(images), images_path)
    images = images.astype(np.float32)  # native byte order; FITS data are big-endian
    check_images(images, images_path)
    labels = check_labels(labels.astype(np.float64), len(images), labels_path)
    inputs = [images_path] if images_path == labels_path else [images_path, labels_path]
    return RawDomain(images, labels, inputs, "fits")


def load_fits(path: Path) -> RawDomain:
    """Read a 2-extension FITS file: images in extension 0 or 1, labels in the next one."""
    datas = _fits_arrays(path)
    first = next((i for i, d in enumerate(datas[:2]) if d is not None and d.ndim == 4), None)
    if first is None or first + 1 >= len(datas) or datas[first + 1] is None:
        raise InvalidDatasetError(
            path,
            "expected 4-D images in extension 0 or 1 and labels in the next extension",
            "pass the DeepMerge FITS file that holds both images and labels",
        )
    return _fits_domain(datas[first], path, datas[first + 1], path)


def load_fits_pair(images_path: Path, labels_path: Path) -> RawDomain:
    """Read images and labels from two FITS files (the first HDU holding data in each)."""
    found = []
    for path in (images_path, labels_path):
        data = next((d for d in _fits_arrays(path) if d is not None), None)
        if data is None:
            raise InvalidDatasetError(path, "FITS file holds no data", "check the file")
        found.append(data)
    return _fits_domain(found[0], images_path, found[1], labels_path)


def group_copies(images: np.ndarray) -> tuple[np.ndarray, int]:
    """Galaxy ids from the multiset of pixel values (unchanged by 90-degree turns and flips).

    Returns:
        Ids [N] (0, 1, ... in order of first appearance) and the largest group size.
    """
    keys = {}
    ids = np.empty(len(images), dtype=np.int64)
    for row in range(len(images)):
        pixels = np.asarray(images[row], np.float32).reshape(len(images[row]), -1)
        key = hashlib.sha1(np.sort(pixels, axis=1)).digest()
        ids[row] = keys.setdefault(key, len(keys))
    largest = int(np.bincount(ids).max())
    return ids, largest


def split_by_galaxy(
    labels: np.ndarray, galaxy_id: np.ndarray, fractions: Sequence[float], seed: int
) -> np.ndarray:
    """Split codes per row: galaxies shuffled per class, cut at the cumulative fractions."""
    rng = np.random.default_rng(seed)
    ids, first = np.unique(galaxy_id, return_index=True)
    split_of_id = np.empty(len(ids), dtype=np.uint8)
    cuts = np.cumsum(fractions)[:-1] / np.sum(fractions)
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(labels[first] == label))
        bounds = np.round(cuts * len(members)).astype(int)
        for code, part in enumerate(np.split(members, bounds)):
            split_of_id[part] = code
    return split_of_id[np.searchsorted(ids, galaxy_id)]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_domain(raw: RawDomain, domain: str, args: argparse.Namespace) -> DomainData:
    """Attach galaxy ids, splits and provenance attributes to one domain's raw arrays."""
    if args.augmented_copies > 1:
        galaxy_id, largest = group_copies(raw.images)
        if largest > args.augmented_copies:
            raise InvalidDatasetError(
                raw.inputs[0],
                f"{largest} rows share one pixel multiset, more than --augmented-copies "
                f"{args.augmented_copies} (blank or repeated images?)",
                "drop --augmented-copies to split per row",
            )
        grouping = (
            f"grouped by exact pixel multiset (90-degree rotations/flips): "
            f"{len(np.unique(galaxy_id))} galaxies in {len(galaxy_id)} rows"
        )
    else:
        galaxy_id = np.arange(len(raw.labels), dtype=np.int64)
        grouping = "one id per row: augmented copies are not recovered and may span splits"
    fractions = args.split_fractions
    return DomainData(
        images=raw.images,
        labels=raw.labels,
        galaxy_id=galaxy_id,
        split=split_by_galaxy(raw.labels, galaxy_id, fractions, args.seed),
        attrs={
            "domain": domain,
            "filters": list(FILTERS),
            "pixel_scale_arcsec": args.pixel_scale_arcsec,
            "psf_fwhm_arcsec": args.psf_fwhm_arcsec,
            "noise": getattr(args, f"{domain}_noise") or DEFAULT_NOISE[domain],
            "generator": GENERATOR,
            "generator_version": GENERATOR_VERSION,
            "seed": args.seed,
            "input_format": raw.format,
            "input_files": [p.name for p in raw.inputs],
            "input_sha256": [sha256(p) for p in raw.inputs],
            "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "split_fractions": [float(f) for f in fractions],
            "augmented_copies": args.augmented_copies,
            "id_grouping": grouping,
        },
    )


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected three positive numbers like 0.7,0.1,0.2: {text}"
        )
    return values


def _format_of(path: Path, requested: str) -> str:
    if requested != "auto":
        return requested
    return "fits" if path.suffix.lower() in (".fits", ".fit", ".fz") else "npy"


def load_inputs(args: argparse.Namespace) -> dict[str, RawDomain]:
    """Load and check both domains from the (already consistent) command-line arguments."""
    raws = {}
    for domain in ("source", "target"):
        fits_path = getattr(args, f"{domain}_fits")
        images, labels = getattr(args, f"{domain}_images"), getattr(args, f"{domain}_labels")
        if fits_path is not None:
            raws[domain] = load_fits(fits_path)
        elif _format_of(images, args.format) == "fits":
            raws[domain] = load_fits_pair(images, labels)
        else:
            raws[domain] = load_npy(images, labels)
    return raws


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exactly one input form per domain, and a sensible --augmented-copies."""
    for domain in ("source", "target"):
        pair = (getattr(args, f"{domain}_images"), getattr(args, f"{domain}_labels"))
        has_fits = getattr(args, f"{domain}_fits") is not None
        if has_fits == any(p is not None for p in pair) or (not has_fits and None in pair):
            parser.error(
                f"give --{domain}-images and --{domain}-labels, or --{domain}-fits (not both)"
            )
    if args.augmented_copies < 1:
        parser.error("--augmented-copies must be >= 1")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    for name in ("pixel_scale_arcsec", "psf_fwhm_arcsec"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            parser.error(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for domain in ("source", "target"):
        parser.add_argument(f"--{domain}-images", type=Path, help=f"{domain} images (.npy)")
        parser.add_argument(f"--{domain}-labels", type=Path, help=f"{domain} labels (.npy)")
        parser.add_argument(f"--{domain}-fits", type=Path, help=f"{domain} 2-extension FITS")
        parser.add_argument(
            f"--{domain}-noise", help=f"noise attribute (default {DEFAULT_NOISE[domain]!r})"
        )
    parser.add_argument("--out", type=Path, required=True, help="folder for source/target.h5")
    parser.add_argument(
        "--format",
        choices=("auto", "npy", "fits"),
        default="auto",
        help="format of --*-images/--*-labels (auto: by extension, .fits/.fit = FITS)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the split (default 1)")
    parser.add_argument("--split-fractions", type=_fractions, default=(0.7, 0.1, 0.2))
    parser.add_argument(
        "--augmented-copies",
        type=int,
        default=1,
        help="K > 1: group rows that are rotated/flipped copies (at most K) into one galaxy id",
    )
    parser.add_argument("--pixel-scale-arcsec", type=float, default=DEFAULT_PIXEL_SCALE_ARCSEC)
    parser.add_argument("--psf-fwhm-arcsec", type=float, default=DEFAULT_PSF_FWHM_ARCSEC)
    parser.add_argument("--force", action="store_true",
                        help="replace a pair that --out already holds")
    return parser


def import_real(args: argparse.Namespace) -> dict[str, Path]:
    """Check the inputs, then write and validate ``source.h5`` and ``target.h5`` as one pair.

    Nothing is written unless both inputs pass their checks; the files are written and
    validated in a temporary folder and replace the pair in ``args.out`` only if both pass
    (:func:`galaxies.pairs.pair_transaction`), so a failure leaves the old pair untouched.

    Raises:
        InvalidDatasetError: an input, or a written file, fails its checks.
        OSError: ``args.out`` cannot be written (disk full, permissions).
    """
    raws = load_inputs(args)
    domains = {domain: to_domain(raw, domain, args) for domain, raw in raws.items()}
    with pair_transaction(args.out, compute_pair_id(domains)) as pair:
        for domain, data in domains.items():
            pair.write(domain, data)
    return domain_paths(args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the importer; print the written files or a one-line error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    refusal = refuse_existing_pair(args.out, args.force)
    if refusal:
        parser.exit(2, f"error: {refusal}\n")
    try:
        paths = import_real(args)
    except (InvalidDatasetError, OSError) as err:
        message = write_error_message(err, args.out)
        if message is None and not isinstance(err, InvalidDatasetError):
            raise
        print(f"error: {message or err}", file=sys.stderr)
        return 1
    for domain, path in paths.items():
        print(f"wrote {domain}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
