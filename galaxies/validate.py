"""Check a domain file against the schema of ``galaxies.schema``, loudly and in one line.

Every problem becomes an ``InvalidDatasetError`` whose message is one line naming the file,
the problem and the fix::

    data/source.h5: 3 pixels are NaN or inf (rows 4, 17; first row 4). Fix: ...

Beyond the schema, pixel values must be physical (finite, ``|x| <= MAX_ABS_PIXEL``), the
pixel scale and PSF sizes finite numbers > 0, no channel may be constant, and every split of
the *source* (the labelled domain training learns from) must hold both classes.
:func:`validate_pair` checks a folder's two files and that they belong together: same
filters, pixel scale and image shape (compared from the attributes, not trusted from the pair
id), and the same ``pair_id`` when the files have one (written by
``galaxies.pairs.pair_transaction``; older files have none and pass on the other checks).
PSF sizes may differ between the domains (a wider target PSF is a shift, see
``galaxies/simulate.py --target-psf-scale``), but a target that states its PSF widening
(``target_psf_scale``) must have the source's FWHMs times that factor.

Command line (exit status 0 only if every file, and every pair, is valid)::

    python galaxies/validate.py data/benchmark/source.h5 data/benchmark/target.h5
    python galaxies/validate.py data/benchmark          # a folder: both files and the pair
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import h5py
import numpy as np

from galaxies.schema import (
    DATASET_DTYPES,
    DOMAINS,
    FILTERS,
    IMAGE_SHAPE,
    LABELS,
    PAIR_ID_ATTR,
    REQUIRED_ATTRS,
    SPLIT_NAMES,
    SPLITS,
    DomainData,
    domain_paths,
    read_attrs,
)

REMAKE = (
    "re-create it with `python galaxies/simulate.py --out DIR` or "
    "`python galaxies/import_real.py ... --out DIR`"
)
CHUNK_ROWS = 1024  # rows checked at a time for NaN/inf, so the check never doubles memory
#: Largest plausible |pixel| in a file's own units. The simulator writes nanomaggies (AB
#: zeropoint 22.5): a pixel of 1e10 nmgy would be a magnitude -2.5 source in 1.6e-3 arcsec^2;
#: imported counts or electrons stay far below it too. Larger values (e.g. +-3e38, float32's
#: edge) are uninitialised memory or a units bug, and overflow the normalisation.
MAX_ABS_PIXEL = 1e10
PAIR_FIX = ("re-simulate or re-import both files together: `python galaxies/simulate.py --out "
            "DIR ...` or `python galaxies/import_real.py ... --out DIR` writes the pair in one "
            "transaction")


class InvalidDatasetError(ValueError):
    """A dataset file that breaks the schema; ``str()`` is ``"<path>: <problem>. Fix: <fix>"``.

    Attributes:
        path: the offending file.
        problem: what is wrong, without a final full stop.
        fix: what to do about it.
    """

    def __init__(self, path: str | os.PathLike, problem: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}. Fix: {fix}")


def _rows_text(rows: np.ndarray, limit: int = 5) -> str:
    """``"rows 1, 4, 9 and 12 more"`` for a sorted array of row numbers."""
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _check_structure(path: Path, h5: h5py.File) -> None:
    """Datasets, shapes, dtypes, lengths and attributes, before any array is read."""
    fail = partial(InvalidDatasetError, path)
    missing = [n for n in DATASET_DTYPES if not isinstance(h5.get(n), h5py.Dataset)]
    if missing:
        raise fail(f"missing datasets {missing}", f"the file is not a domain file; {REMAKE}")
    images = h5["images"]
    if images.ndim != 4:
        raise fail(
            f"images have shape {images.shape}, expected [N, {', '.join(map(str, IMAGE_SHAPE))}]",
            f"store images channels-first as [N, 3, 75, 75]; {REMAKE}",
        )
    if images.shape[1] != IMAGE_SHAPE[0]:
        raise fail(
            f"images have {images.shape[1]} channels, expected {IMAGE_SHAPE[0]} ({FILTERS})",
            "store one channel per filter in the schema's order, channels-first",
        )
    if images.shape[2:] != IMAGE_SHAPE[1:]:
        raise fail(
            f"images are {images.shape[2]}x{images.shape[3]} pixels, expected "
            f"{IMAGE_SHAPE[1]}x{IMAGE_SHAPE[2]}",
            "crop or resample the images to 75x75 pixels before writing them",
        )
    for name, dtype in DATASET_DTYPES.items():
        dataset = h5[name]
        if name != "images" and dataset.ndim != 1:
            raise fail(f"{name} has shape {dataset.shape}, expected [N]", f"store {name} as 1-D")
        if dataset.dtype != dtype:
            raise fail(
                f"{name} has dtype {dataset.dtype}, expected {dtype}",
                "write the file with galaxies.schema.write_domain, which casts every array",
            )
    lengths = {name: h5[name].shape[0] for name in DATASET_DTYPES}
    if len(set(lengths.values())) != 1:
        raise fail(
            f"datasets have different lengths {lengths}",
            f"every dataset needs one entry per image; {REMAKE}",
        )
    missing_attrs = [name for name in REQUIRED_ATTRS if name not in h5.attrs]
    if missing_attrs:
        raise fail(
            f"missing required attributes {missing_attrs}",
            "add them (see galaxies/schema.py REQUIRED_ATTRS) or re-create the file",
        )


def _check_attrs(path: Path, attrs: dict) -> None:
    """The ``filters`` order and the ``domain`` name."""
    filters = attrs["filters"]
    filters = [filters] if isinstance(filters, str) else list(filters)
    if tuple(filters) != FILTERS:
        raise InvalidDatasetError(
            path,
            f"attribute filters is {filters}, expected {list(FILTERS)} in this order",
            "reorder the image channels to the schema's filter order and fix the attribute",
        )
    if attrs["domain"] not in DOMAINS:
        raise InvalidDatasetError(
            path,
            f"attribute domain is {attrs['domain']!r}, expected one of {list(DOMAINS)}",
            "set domain to 'source' (labelled, simulated) or 'target'",
        )
    scale = _positive_numbers(attrs["pixel_scale_arcsec"])
    if scale is None or len(scale) != 1:
        raise InvalidDatasetError(
            path,
            f"attribute pixel_scale_arcsec is {attrs['pixel_scale_arcsec']!r}, expected one "
            "finite number > 0",
            "set it to the images' pixel scale in arcsec (0.04 for the simulator's)",
        )
    psf = _positive_numbers(attrs["psf_fwhm_arcsec"])
    if psf is None or len(psf) not in (1, len(FILTERS)):
        raise InvalidDatasetError(
            path,
            f"attribute psf_fwhm_arcsec is {attrs['psf_fwhm_arcsec']!r}, expected one finite "
            f"number > 0, or one per filter ({len(FILTERS)})",
            "set it to the PSF FWHM in arcsec of each filter",
        )


def _positive_numbers(value: object) -> np.ndarray | None:
    """``value`` as a 1-d float array when it holds only finite numbers > 0, else ``None``."""
    try:
        numbers = np.atleast_1d(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        return None
    ok = numbers.ndim == 1 and numbers.size and np.isfinite(numbers).all() and (numbers > 0).all()
    return numbers if ok else None


def _numbers_text(numbers: np.ndarray | None) -> str:
    """``"0.09, 0.12, 0.18"`` (``"?"`` for ``None``), for messages and summaries."""
    return "?" if numbers is None else ", ".join(f"{x:g}" for x in numbers)


def _check_pixels(path: Path, images: np.ndarray) -> None:
    """NaN/inf pixels, non-physical ones and constant channels, ``CHUNK_ROWS`` rows at a time."""
    bad_rows, bad_pixels = [], 0
    huge_rows, huge_pixels, largest = [], 0, 0.0
    low = np.full(images.shape[1], np.inf)
    high = np.full(images.shape[1], -np.inf)
    for start in range(0, len(images), CHUNK_ROWS):
        chunk = images[start : start + CHUNK_ROWS]
        finite = np.isfinite(chunk)
        if not finite.all():
            per_row = (~finite).reshape(len(finite), -1).sum(axis=1)
            bad_pixels += int(per_row.sum())
            bad_rows.append(np.flatnonzero(per_row) + start)
        magnitude = np.abs(np.where(finite, chunk, 0))
        huge = magnitude > MAX_ABS_PIXEL
        if huge.any():
            per_row = huge.reshape(len(huge), -1).sum(axis=1)
            huge_pixels += int(per_row.sum())
            huge_rows.append(np.flatnonzero(per_row) + start)
            largest = max(largest, float(magnitude.max()))
        if finite.all():
            low = np.minimum(low, chunk.min(axis=(0, 2, 3)))
            high = np.maximum(high, chunk.max(axis=(0, 2, 3)))
    if bad_pixels:
        rows = np.concatenate(bad_rows)
        raise InvalidDatasetError(
            path,
            f"{bad_pixels} pixels are NaN or inf in {len(rows)} images "
            f"({_rows_text(rows)}; first row {int(rows[0])})",
            "regenerate those images or drop the rows before writing the file",
        )
    if huge_pixels:
        rows = np.concatenate(huge_rows)
        raise InvalidDatasetError(
            path,
            f"{huge_pixels} pixels have |value| > {MAX_ABS_PIXEL:g} (largest {largest:.3g}) in "
            f"{len(rows)} images ({_rows_text(rows)}; first row {int(rows[0])}), not physical "
            "fluxes",
            "check the units and the input (uninitialised or overflowed values); regenerate "
            "those images or drop the rows",
        )
    constant = [c for c in range(len(low)) if len(images) and low[c] == high[c]]
    if constant:
        names = ", ".join(f"{c} ({FILTERS[c]}, every pixel {low[c]:g})" for c in constant)
        raise InvalidDatasetError(
            path,
            f"channel {names} is constant",
            "every filter needs real pixel values: check the channel order and the input "
            "of that filter",
        )


def _check_values(path: Path, data: DomainData) -> None:
    """Label and split codes, empty splits and galaxies shared between splits."""
    fail = partial(InvalidDatasetError, path)
    bad = np.flatnonzero(~np.isin(data.labels, list(LABELS)))
    if len(bad):
        raise fail(
            f"labels must be 0 or 1, found {sorted(set(data.labels[bad].tolist()))} in "
            f"{_rows_text(bad)}",
            "use 1 for mergers and 0 for non-mergers",
        )
    bad = np.flatnonzero(~np.isin(data.split, list(SPLIT_NAMES)))
    if len(bad):
        raise fail(
            f"split codes must be 0, 1 or 2, found {sorted(set(data.split[bad].tolist()))} in "
            f"{_rows_text(bad)}",
            f"use the codes {SPLITS}",
        )
    counts = np.bincount(data.split, minlength=len(SPLITS))
    empty = [SPLIT_NAMES[code] for code in SPLIT_NAMES if counts[code] == 0]
    if empty:
        raise fail(
            f"split {'/'.join(empty)} has no rows (train/val/test = {counts.tolist()})",
            "split the galaxies so that train, val and test each get some",
        )
    pairs = np.unique(np.stack([data.galaxy_id, data.split.astype(np.int64)]), axis=1)
    ids, n_splits = np.unique(pairs[0], return_counts=True)
    shared = ids[n_splits > 1]
    if len(shared):
        first = shared[0]
        where = [SPLIT_NAMES[int(c)] for c in pairs[1, pairs[0] == first]]
        raise fail(
            f"{len(shared)} galaxy ids are in more than one split (e.g. id {first} in "
            f"{' and '.join(where)}), so augmented copies leak between splits",
            "assign splits per galaxy_id, not per row",
        )
    if data.attrs.get("domain") == "source":
        for name, code in SPLITS.items():
            present = np.unique(data.labels[data.split == code])
            if len(present) < len(LABELS):
                only = LABELS[int(present[0])]
                missing = LABELS[1 - int(present[0])]
                raise fail(
                    f"source split {name} holds only {only}s ({int(counts[code])} rows, no "
                    f"{missing}), so training or model selection sees one class",
                    "split each class across train, val and test (per class, by galaxy)",
                )


def validate_file(path: str | os.PathLike) -> DomainData:
    """Load a domain file and check everything the schema promises.

    Args:
        path: an ``.h5`` domain file.

    Returns:
        The file's arrays and attributes.

    Raises:
        InvalidDatasetError: on the first problem found, with a one-line message.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidDatasetError(path, "file does not exist", f"check the path or {REMAKE}")
    if not path.is_file():
        raise InvalidDatasetError(path, "is not a file", "pass the .h5 file, not its folder")
    try:
        with h5py.File(path, "r") as h5:
            _check_structure(path, h5)
            attrs = read_attrs(h5)
            _check_attrs(path, attrs)
            data = DomainData(
                images=h5["images"][...],
                labels=h5["labels"][...],
                galaxy_id=h5["galaxy_id"][...],
                split=h5["split"][...],
                attrs=attrs,
            )
    except OSError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InvalidDatasetError(
            path,
            f"not a readable HDF5 file, truncated or of another format ({reason})",
            f"copy or download it again completely, or {REMAKE}",
        ) from None
    _check_pixels(path, data.images)
    _check_values(path, data)
    return data


def _describe(attrs: Mapping) -> str:
    """``"galaxies.simulate v4 seed 7"``: where a file came from, for pair messages."""
    return (f"{attrs.get('generator', '?')} v{attrs.get('generator_version', '?')} "
            f"seed {attrs.get('seed', '?')}")


def check_pair(paths: Mapping[str, Path], attrs: Mapping[str, Mapping],
               image_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Check that a source and a target file belong together.

    Args:
        paths: ``{"source": path, "target": path}`` (named in the messages).
        attrs: each file's attributes.
        image_shapes: each file's ``images.shape[1:]``.

    Raises:
        InvalidDatasetError: a file holds the other domain, the filters or image shapes
            differ, the pixel scales differ (compared from the attributes themselves, whatever
            the pair ids say), or the ``pair_id`` attributes differ (or only one file has
            one). PSF sizes may differ: a broader target PSF is a domain shift, not an error
            (:func:`summarize` prints each file's); but a target with a ``target_psf_scale``
            attribute must hold one or one-per-filter finite factors > 0 and the source's
            ``psf_fwhm_arcsec`` times them (:func:`_check_psf_scale`).
    """
    for domain, path in paths.items():
        if attrs[domain]["domain"] != domain:
            raise InvalidDatasetError(
                path,
                f"file holds domain {attrs[domain]['domain']!r}, expected {domain!r}",
                "name the files source.h5 and target.h5 after their domain attribute",
            )
    source, target = attrs["source"], attrs["target"]
    if list(source["filters"]) != list(target["filters"]):
        raise InvalidDatasetError(
            paths["target"],
            f"filters {target['filters']} differ from the source's {source['filters']}",
            "create both domains with the same filters in the same order",
        )
    scales = {d: float(np.atleast_1d(np.asarray(attrs[d]["pixel_scale_arcsec"], float))[0])
              for d in ("source", "target")}
    if not np.isclose(scales["source"], scales["target"], rtol=1e-6, atol=0.0):
        raise InvalidDatasetError(
            paths["target"],
            f"pixel scale {scales['target']:g} arcsec differs from the source's "
            f"{scales['source']:g} arcsec, so one pixel is not the same patch of sky in the two "
            "domains",
            "resample the target cut-outs to the source's pixel scale (75 x 75 pixels at the "
            "same arcsec per pixel) and import them again",
        )
    if tuple(image_shapes["source"]) != tuple(image_shapes["target"]):
        raise InvalidDatasetError(
            paths["target"],
            f"image shape {tuple(image_shapes['target'])} differs from the source's "
            f"{tuple(image_shapes['source'])}",
            "create both domains with the same image shape",
        )
    _check_psf_scale(paths["target"], source, target)
    ids = {domain: attrs[domain].get(PAIR_ID_ATTR) for domain in ("source", "target")}
    if ids["source"] == ids["target"]:
        return  # the same transaction, or two files older than pair ids (not checkable)
    if None in ids.values():
        has = "source" if ids["source"] is not None else "target"
        lacks = "target" if has == "source" else "source"
        problem = (f"the {has} file has pair_id {ids[has]} but {paths[lacks]} has none, so "
                   "the two files were not written together")
    else:
        problem = (f"pair_id {ids['target']} differs from the source's {ids['source']} "
                   f"({paths['source']}), so the two files were not written together")
    raise InvalidDatasetError(
        paths["target"],
        f"{problem} (source: {_describe(source)}; target: {_describe(target)})",
        PAIR_FIX,
    )


def _check_psf_scale(path: Path, source: Mapping, target: Mapping) -> None:
    """A target's stated PSF widening agrees with the two files' PSF FWHMs (if it states one).

    Files without ``target_psf_scale`` (imports, the simulator at the default scale) pass:
    their PSFs may differ for any reason.
    """
    if "target_psf_scale" not in target:
        return
    fail = partial(InvalidDatasetError, path)
    n = len(FILTERS)
    scale = _positive_numbers(target["target_psf_scale"])
    if scale is None or len(scale) not in (1, n):
        raise fail(
            f"attribute target_psf_scale is {target['target_psf_scale']!r}, expected one finite "
            f"factor > 0, or one per filter ({n})",
            "re-simulate the pair with `python galaxies/simulate.py --target-psf-scale S ...`",
        )
    fwhm = {d: _positive_numbers(a["psf_fwhm_arcsec"]) for d, a in (("source", source),
                                                                     ("target", target))}
    expected = np.broadcast_to(fwhm["source"], n) * np.broadcast_to(scale, n)
    if not np.allclose(np.broadcast_to(fwhm["target"], n), expected, rtol=1e-6, atol=0.0):
        raise fail(
            f"PSF FWHM {_numbers_text(fwhm['target'])} arcsec is not the source's "
            f"{_numbers_text(fwhm['source'])} arcsec times the file's target_psf_scale "
            f"{_numbers_text(scale)}, so the file misstates its PSF",
            "re-simulate the pair with `python galaxies/simulate.py --target-psf-scale S ...` "
            "(which writes both consistently), or correct psf_fwhm_arcsec/target_psf_scale",
        )


def validate_pair(data_dir: str | os.PathLike) -> dict[str, DomainData]:
    """Validate ``data_dir/source.h5`` and ``data_dir/target.h5`` and that they form a pair.

    Returns:
        ``{"source": DomainData, "target": DomainData}``.

    Raises:
        InvalidDatasetError: a file is missing or invalid, or the two do not belong together
            (:func:`check_pair`).
    """
    data_dir = Path(data_dir)
    paths = domain_paths(data_dir)
    for domain, path in paths.items():
        if not path.is_file():
            raise InvalidDatasetError(
                path,
                f"{domain} file does not exist",
                f"create the benchmark with `python galaxies/simulate.py --out {data_dir}` "
                "(or import published data with galaxies/import_real.py)",
            )
    data = {domain: validate_file(path) for domain, path in paths.items()}
    check_pair(paths, {d: v.attrs for d, v in data.items()},
               {d: v.images.shape[1:] for d, v in data.items()})
    return data


def summarize(data: DomainData) -> str:
    """A few lines describing a loaded domain: size, splits, classes, filters, noise."""
    attrs = data.attrs
    lines = [
        f"{attrs.get('domain', '?')}: {len(data)} images "
        f"[{', '.join(map(str, data.images.shape[1:]))}], "
        f"{len(np.unique(data.galaxy_id))} galaxies",
    ]
    for name, code in SPLITS.items():
        mask = data.split == code
        mergers = int(data.labels[mask].sum())
        lines.append(
            f"  {name:5s} {int(mask.sum()):7d} rows: {mergers} mergers, "
            f"{int(mask.sum()) - mergers} non-mergers"
        )
    filters = attrs.get("filters", [])
    filters = [filters] if isinstance(filters, str) else filters
    lines.append(f"  filters: {', '.join(filters)}")
    lines.append(f"  noise: {attrs.get('noise', '?')}")
    scale, psf, widening = (_positive_numbers(attrs.get(name)) for name in
                            ("pixel_scale_arcsec", "psf_fwhm_arcsec", "target_psf_scale"))
    lines.append(f"  pixel scale: {_numbers_text(scale)} arcsec, PSF FWHM: "
                 f"{_numbers_text(psf)} arcsec"
                 + (f" (the source's x {_numbers_text(widening)})" if widening is not None else ""))
    lines.append(
        f"  generator: {attrs.get('generator', '?')} {attrs.get('generator_version', '')} "
        f"(seed {attrs.get('seed', '?')})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Validate each file (or folder) given; return 0 only if all files and pairs are valid.

    A folder stands for its ``source.h5`` and ``target.h5``; two valid files of one folder
    that hold a source and a target are also checked as a pair (:func:`check_pair`).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path,
                        help="domain .h5 files to check, or folders holding source.h5/target.h5")
    args = parser.parse_args(argv)
    files: list[Path] = []
    for path in args.files:
        files += list(domain_paths(path).values()) if path.is_dir() else [path]
    n_bad = 0
    found: dict[Path, dict[str, tuple[Path, DomainData]]] = {}
    for path in files:
        try:
            data = validate_file(path)
        except InvalidDatasetError as err:
            n_bad += 1
            print(f"INVALID {err}", file=sys.stderr)
            continue
        print(f"OK {path}\n{summarize(data)}")
        found.setdefault(path.resolve().parent, {})[str(data.attrs["domain"])] = (path, data)
    for pair in found.values():
        if set(pair) != {"source", "target"}:
            continue
        try:
            check_pair({d: pair[d][0] for d in pair}, {d: pair[d][1].attrs for d in pair},
                       {d: pair[d][1].images.shape[1:] for d in pair})
        except InvalidDatasetError as err:
            n_bad += 1
            print(f"INVALID pair: {err}", file=sys.stderr)
            continue
        print(f"OK pair {pair['source'][0]} + {pair['target'][0]}")
    if n_bad and len(files) > 1:
        print(f"{n_bad} problems in {len(files)} files", file=sys.stderr)
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
