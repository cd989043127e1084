r"""The shift meter: how far are my images from the simulation, and what did DA manage there?

Example::

    python apply/shift.py --images my_cutouts.h5 --trial runs/seeds/mmd_deepmerge/seed_1
    python apply/shift.py --images stamps.npy --json shift.json
    python apply/shift.py --images fits_folder/ --atlas reports/atlas
    python apply/shift.py --images my_cutouts.h5 --search runs/search/mmd_deepmerge

Reads the images (any input of ``apply/predict.py``: the project's HDF5, a ``.npy`` array
[N, 3, 75, 75] or [N, 75, 75, 3], a FITS cube or a folder of FITS files) and measures
physical statistics per filter (:mod:`galaxies.shift_stats`): the sky-noise depth (the
SB_lim the frame noise corresponds to), the median size of the light's core under a fixed
2-px Gaussian weight (the seeing's statistic: a nucleus's width follows the PSF, whatever
the share of mergers in the set) and the median adaptive-moment size of the light. It
places them on the shift atlas (``analysis/shift_atlas.py``; the cells' statistics,
``<atlas>/cells.json``, measured on the atlas's own simulated target images):

* the **noise depth** reading :math:`\widehat{\mathrm{SB}}` is the median over filters;
* the **seeing** reading :math:`\hat s` (target PSF FWHM / source PSF FWHM) inverts, filter
  by filter, the ratio of the median core size to that of the atlas's PSF-×1 targets at the same
  depth, on the curve the atlas's PSF cells (×1, ×1.25, ×1.5 at SB_lim 25) trace (linear,
  extrapolated beyond ×1.5), then takes the median over filters; its error propagates the
  median core sizes' bootstrap errors and adds :data:`SEEING_CLASS_MIX` in quadrature (a
  set of only mergers or only non-mergers reads about ×0.05 off the mixed one);
* the **nearest cell** minimises :math:`\sqrt{(\Delta\mathrm{SB}/1\,\mathrm{mag})^2 +
  (\Delta s/0.25)^2}` (the grid's steps), and the next nearest is named as its neighbour.

The verdict is **outside** — and says why — when the reading leaves the atlas: a depth more
than half a step beyond 23-27 mag/arcsec², a seeing more than two errors beyond
×0.875-×1.625, filters whose depths differ by more than 1 mag (the atlas has one depth for
all), light HSM cannot measure in three quarters of the images in every filter, or a point
more than 0.75 steps from every cell (the atlas is a cross, not a full grid). The errors
count augmented copies of a merger as independent images, so they are optimistic.
Noiseless images read as the simulation's **source** domain. Images in other units than the
project's (nanomaggies at 0.04"/pixel: counts, an 8-bit stretch) land outside by
construction. For real galaxies the seeing reading mixes the PSF with how their sizes differ
from the simulated ones: it is a distance from the simulation, not a PSF measurement.

For images not outside it prints every method's measured target accuracy in the cell
they resemble (``<atlas>/atlas.json``; "not measured yet" until the atlas's records exist).
With ``--trial`` (or ``--search LOGDIR``: the search's label-free pick) it also marks the
model's method among them, says which cell the model was adapted to (its target's recorded
SB_lim and PSF scale), what share of the images the model's own
out-of-distribution reference flags (:mod:`apply.ood`, ``python apply/fit_ood.py --trial``)
and, for the set as a whole, how far their features lie from the model's target training
features against its target validation images (:func:`feature_shift`: median ratio,
P(farther), one-sided Mann-Whitney p-value):
the model-feature view beside the physical one. When the model flags more than half of them
(:data:`MODEL_FLAGGED`) and was adapted to the cell they resemble, the verdict is outside
too: a model's features see more than a few statistics do. When it was adapted to another
cell (or to a target that is no atlas cell), the verdict says so instead: the atlas's
figures in the resembled cell are for a model adapted to such images.

With fewer than :data:`MIN_SIZE_IMAGES` images whose core is measured the seeing is not
read, and the verdict is **not placed** (never "inside"): the depth alone names the nearest
cell, but a wider PSF or larger galaxies would go unseen.

Exit status: 0 measured (inside, not placed or outside); 2 bad input (one line on stderr,
checked before the images are read where it can be: the atlas, ``--trial``, ``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ATLAS = REPO / "reports" / "atlas"
SB_STEP, PSF_STEP = 1.0, 0.25  #: the atlas grid's steps (the distance's units)
MAX_STEPS = 0.75  #: farther than this from every cell is outside
MAX_BAND_SPREAD = 1.0  #: mag: filters' depths further apart than this are outside
MIN_SIZE_MEASURED = 0.25  #: a filter's size counts if HSM measured this share of images
SOURCE_SB = 30.0  #: a depth reading above this is noiseless: the source domain
#: The model flags more than this share: outside what it knows (for images resembling the
#: cell it was adapted to; for another cell a caveat, :func:`measure`).
MODEL_FLAGGED = 0.5
MIN_SIZE_IMAGES = 100  #: images with a measured core a filter needs to read the seeing
#: The statistic the seeing is read from: the light's core size (robust to the merger
#: fraction of the set; ``galaxies.shift_stats.core_size``), not the adaptive size.
SEEING_STAT = "core"
#: Systematic error of the seeing reading from the share of mergers in the set: on
#: development data seed 2 (400 + 400 images per PSF cell) only mergers read ×0.03-0.06
#: higher and only non-mergers ×0.05-0.06 lower than the mixed set (the adaptive size:
#: ×0.17-0.24; benchmarks/records/seeing_statistic_dev.json)
SEEING_CLASS_MIX = 0.05
MAX_SKY_OFFSET = 3.0  #: |frame level| / noise sigma above this: the sky is not subtracted
SOURCE_SIZE_TOLERANCE = 0.3  #: noiseless images whose sizes differ more: not the source


class ShiftError(ValueError):
    """Bad input for the meter (exit status 2)."""


def load_atlas(atlas: Path) -> dict[str, Any]:
    """The atlas's ``cells.json`` (and ``atlas.json`` when it exists), checked.

    Raises:
        ShiftError: no or unreadable ``cells.json``; cells that are not a mapping, sizes that
            are not three finite positive numbers, no SB_lim-25 PSF-×1 cell, PSF cells whose
            sizes do not grow with the PSF; an unreadable ``atlas.json``.
    """
    path = Path(atlas) / "cells.json"
    fix = "Fix: run python analysis/shift_atlas.py --data-only, or pass --atlas DIR"
    try:
        cells = json.loads(path.read_text())
        grid = cells["cells"]
        if not isinstance(grid, dict) or not grid:
            raise TypeError("'cells' is not a mapping of cells")
        for name, cell in grid.items():
            cell["limiting_sb"], cell["psf_scale"] = (float(cell["limiting_sb"]),
                                                      float(cell["psf_scale"]))
            for key in ("size", SEEING_STAT):
                size = np.asarray(cell["target"][key], dtype=float)
                if size.shape != (3,) or not (np.isfinite(size) & (size > 0)).all():
                    raise ValueError(f"cell {name}: {key} {size.tolist()} are not 3 positive "
                                     "numbers")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ShiftError(f"{path}: no usable atlas cell statistics ({exc}). {fix}") from None
    seeing = sorted((c["psf_scale"], c["target"][SEEING_STAT]) for c in grid.values()
                    if c["limiting_sb"] == 25.0)
    if not any(c["psf_scale"] == 1.0 for c in grid.values()) or len(seeing) < 2 \
            or seeing[0][0] != 1.0:
        raise ShiftError(f"{path}: needs depth cells at PSF x1 and PSF cells at SB_lim 25 "
                         f"(x1 included). {fix}")
    for band in range(3):
        sizes = [size[band] for _, size in seeing]
        if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
            raise ShiftError(f"{path}: the PSF cells' core sizes do not grow with the PSF in "
                             f"filter {band}. {fix}")
    table = Path(atlas) / "atlas.json"
    try:
        rows = json.loads(table.read_text())["rows"] if table.is_file() else []
        if not isinstance(rows, list):
            raise TypeError("'rows' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ShiftError(f"{table}: unreadable atlas table ({exc}). Fix: python "
                         "analysis/shift_atlas.py --tables-only") from None
    return {"cells": grid, "source": cells.get("source"), "rows": rows}


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear ``y(x)`` through the points, extrapolated linearly at both ends."""
    order = np.argsort(xs)
    xs, ys = np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order]
    if len(xs) == 1:
        return float(ys[0])
    i = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
    return float(ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i]))


def reading(summary: dict[str, Any], atlas: dict[str, Any],
            class_mix: float = SEEING_CLASS_MIX) -> dict[str, Any]:
    """Place a set's statistics (:func:`galaxies.shift_stats.summarize`) on the atlas.

    The seeing is read only from filters where HSM measured at least :data:`MIN_SIZE_IMAGES`
    images (fewer galaxies' own spread in size would read as a PSF); without one, the cell is
    named by depth alone and the seeing is said to be unread. ``class_mix`` is the class-mix
    systematic added to the seeing's error in quadrature (0: the statistical error alone).
    """
    grid = atlas["cells"]
    sb_bands = np.asarray(summary["sb_lim"], dtype=float)
    sb = float(np.median(sb_bands))
    n_bands = len(sb_bands)
    measured = summary.get("size_ok") or [1.0] * n_bands
    counts = summary.get("core_n") or [summary.get("n", 0)] * n_bands
    core = summary.get("core") or [None] * n_bands
    core_err = summary.get("core_err") or [0.0] * n_bands
    usable = [b for b, size in enumerate(summary["size"])
              if size is not None and math.isfinite(size) and measured[b] >= MIN_SIZE_MEASURED]
    out: dict[str, Any] = {
        "sb_lim": sb, "sb_lim_per_filter": sb_bands.tolist(),
        "size_per_filter": [summary["size"][b] if b in usable else None for b in range(n_bands)],
        "core_per_filter": [core[b] if b in usable else None for b in range(n_bands)],
        "psf_scale": None, "psf_scale_err": None, "psf_scale_per_filter": [], "reasons": []}
    reasons = out["reasons"]
    if bool((sb_bands >= SOURCE_SB).all()):  # no sky noise in any filter: the source domain?
        source = (atlas.get("source") or {}).get("size") or []
        if len(usable) < n_bands:
            reasons.append("no sky noise and no measurable light: blank or constant images")
        elif source and any(abs(summary["size"][b] / source[b] - 1) > SOURCE_SIZE_TOLERANCE
                            for b in usable):
            reasons.append("no sky noise, but light sizes unlike the simulation's source")
        out.update(cell="source", neighbour=None, distance=None, outside=bool(reasons))
        return out
    offsets = [v for v in summary.get("sky_offset") or [] if v is not None and math.isfinite(v)]
    if offsets and max(abs(v) for v in offsets) > MAX_SKY_OFFSET:
        reasons.append(f"the sky is not subtracted (frame level {max(offsets, key=abs):.1f} "
                       "noise sigmas from zero)")
    if float(np.ptp(sb_bands)) > MAX_BAND_SPREAD:
        reasons.append(f"the filters' depths differ by {np.ptp(sb_bands):.1f} mag (the atlas "
                       "has one depth for all filters)")
    depth = {c["limiting_sb"]: c["target"][SEEING_STAT] for c in grid.values()
             if c["psf_scale"] == 1.0}
    seeing = {c["psf_scale"]: c["target"][SEEING_STAT] for c in grid.values()
              if c["limiting_sb"] == 25.0}
    scales, errors = [], []
    for band in usable:
        size = core[band]
        if counts[band] < MIN_SIZE_IMAGES or size is None or not math.isfinite(size):
            continue
        reference = _interp(sb, list(depth), [v[band] for v in depth.values()])
        ratios = [v[band] / seeing[1.0][band] for v in seeing.values()]
        scales.append(_interp(size / reference, ratios, list(seeing)))
        err = core_err[band] if core_err[band] is not None and math.isfinite(core_err[band]) \
            else 0.0
        errors.append(abs(_interp((size + err) / reference, ratios, list(seeing)) - scales[-1]))
    psf = float(np.median(scales)) if scales else None
    # The median's bootstrap error per filter, combined as if the filters were independent,
    # and the class-mix systematic in quadrature.
    psf_err = (float(math.hypot(np.median(errors) / math.sqrt(len(errors)),
                                class_mix)) if errors else None)
    depths = [c["limiting_sb"] for c in grid.values()]
    psfs = [c["psf_scale"] for c in grid.values()]
    depth_inside = min(depths) - SB_STEP / 2 <= sb <= max(depths) + SB_STEP / 2
    if psf is not None and not depth_inside:
        # The size-depth curve the seeing is read on ends with the atlas's depths.
        psf = psf_err = None
        scales = []
        out["seeing_note"] = ("seeing not read: the noise depth is beyond the atlas's, where "
                              "its sizes are not calibrated")
    elif psf is None:
        out["seeing_note"] = (f"seeing not read: it needs at least {MIN_SIZE_IMAGES} images "
                              "whose light's core is measured in a filter")
    out.update(psf_scale=psf, psf_scale_err=psf_err, psf_scale_per_filter=scales)
    distances = {name: math.hypot((sb - c["limiting_sb"]) / SB_STEP,
                                  0.0 if psf is None else (psf - c["psf_scale"]) / PSF_STEP)
                 for name, c in grid.items() if psf is not None or c["psf_scale"] == 1.0}
    ranked = sorted(distances, key=distances.get)
    out.update(cell=ranked[0], neighbour=ranked[1] if len(ranked) > 1 else None,
               distance=distances[ranked[0]])
    if not depth_inside:
        reasons.append(f"noise depth SB_lim {sb:.1f} mag/arcsec² is beyond the atlas's "
                       f"{min(depths):g}-{max(depths):g}")
    if not usable:
        reasons.append("the light's size could not be measured (HSM failed in more than "
                       f"{100 * (1 - MIN_SIZE_MEASURED):.0f} % of the images in every filter)")
    elif psf is not None and (psf + 2 * psf_err < min(psfs) - PSF_STEP / 2
                              or psf - 2 * psf_err > max(psfs) + PSF_STEP / 2):
        reasons.append(f"seeing x{psf:.2f} ± {psf_err:.2f} (of the source's PSF) is beyond "
                       f"the atlas's x{min(psfs):g}-x{max(psfs):g} (tolerance "
                       f"x{min(psfs) - PSF_STEP / 2:g}-x{max(psfs) + PSF_STEP / 2:g} within "
                       "two errors)")
    if not reasons and distances[ranked[0]] > MAX_STEPS:
        reasons.append(f"{distances[ranked[0]]:.2f} grid steps from the nearest cell "
                       f"({ranked[0]}): between the atlas's axes")
    out["outside"] = bool(reasons)
    return out


def trial_record(trial: Path) -> dict[str, Any]:
    """The trial's ``record.json``, checked (before any image is read).

    Raises:
        ShiftError: no readable ``record.json`` with a method in ``trial``.
    """
    try:
        record = json.loads((Path(trial) / "record.json").read_text())
        if not isinstance(record, dict) or not isinstance(record["method"], str):
            raise TypeError("not a trial's record")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ShiftError(f"--trial {trial}: no readable record.json ({exc}). Fix: pass a "
                         "finished trial folder") from None
    return record


def model_context(trial: Path, atlas: dict[str, Any], cell: str | None,
                  record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trial's method and adapted-to cell, and the atlas's accuracies in ``cell``.

    Raises:
        ShiftError: no readable ``record.json`` in ``trial``.
    """
    record = trial_record(trial) if record is None else record
    method = record["method"]
    attrs = (record.get("data") or {}).get("target_attrs") or {}
    if not isinstance(attrs, dict):
        attrs = {}
    scale = attrs.get("target_psf_scale") or [1.0]
    adapted = {"limiting_sb": attrs.get("limiting_sb_mag_arcsec2"),
               "psf_scale": float(np.median(scale))}
    adapted_cell = next((name for name, c in atlas["cells"].items()
                         if c["limiting_sb"] == adapted["limiting_sb"]
                         and c["psf_scale"] == adapted["psf_scale"]), None)
    measured = {arm: v for arm, v in cell_accuracy(atlas, cell).items()
                if arm in (method, "none", "oracle")}
    return {"trial": str(trial), "problem": record.get("problem"), "method": method,
            "adapted_to": adapted, "adapted_cell": adapted_cell, "atlas_accuracy": measured}


def cell_accuracy(atlas: dict[str, Any], cell: str | None) -> dict[str, Any]:
    """Every arm's target test accuracy the atlas measured in ``cell`` (``atlas.json``).

    ``{arm: {"mean", "std", "seeds"}}`` in the atlas table's order; empty until the atlas's
    trainings are committed.
    """
    return {row["arm"]: {"mean": row["target"]["mean"], "std": row["target"]["std"],
                         "seeds": row["seeds"]}
            for row in atlas["rows"] if row.get("cell") == cell and row.get("target")}


def trial_of_search(search: Path) -> Path:
    """A search's label-free pick (its own objective), as ``apply/predict.py --search`` takes.

    Raises:
        ShiftError: not a search log folder, or no finished trial to pick.
    """
    from apply.predict import PredictError, choose_models

    try:
        picks, _ = choose_models(search=str(search))
    except PredictError as exc:
        raise ShiftError(f"--search {search}: {exc}") from None
    return picks[0].trial_dir


def load_model(trial: Path) -> Any:
    """The trial's trained model, loaded before any image is read.

    :func:`apply.inference.load_trained`: a checked checkpoint, never unpickled.

    Raises:
        ShiftError: the checkpoint cannot be used.
    """
    from apply.inference import ModelLoadError, load_trained

    try:
        return load_trained(trial, "cpu")
    except ModelLoadError as exc:
        raise ShiftError(str(exc)) from None


def model_flags(trial: Path, images: np.ndarray, model: Any = None) -> dict[str, Any]:
    """The share of ``images`` the trial's OOD reference flags (:mod:`apply.ood`).

    ``{"flagged": fraction, "alpha": calibrated rate}``, or ``{"note": how to fit one}`` when
    the trial has no ``ood_reference.npz``. ``model``: the trial's loaded model
    (:func:`load_model` when not given).

    Raises:
        ShiftError: the model or its reference cannot be used.
    """
    from apply.ood import FIT_COMMAND, OodReferenceError, read_reference

    model = load_model(trial) if model is None else model
    try:
        reference = read_reference(trial)
    except OodReferenceError as exc:
        raise ShiftError(str(exc)) from None
    if reference is None:
        return {"note": f"no OOD reference; {FIT_COMMAND} {trial} fits one"}
    distances = reference.distance(model.penultimate(images, "target"))
    return {"flagged": float(np.mean(distances > reference.threshold)),
            "alpha": reference.alpha, **feature_shift(distances, reference.calibration_scores)}


def feature_shift(distances: np.ndarray, validation: np.ndarray) -> dict[str, Any]:
    """A set-level shift test in the model's feature space.

    Are the images farther from the model's target training features than its own target
    validation images are? ``distances``: the images' Mahalanobis distances to the target
    training features (:mod:`apply.ood`); ``validation``: those of the trial's target
    validation images (stored in its reference). Returns the ratio of the medians and the
    one-sided Mann-Whitney U test's p-value (H1: the images' distances are stochastically
    larger), with its effect size ``auc`` = U / (n m), the probability that an image lies
    farther than a validation image (0.5: no shift). The images count as independent draws
    (augmented copies of one galaxy would make the p-value optimistic).
    """
    from scipy.stats import mannwhitneyu

    distances = np.where(np.isnan(distances), np.inf, distances)  # unusable features: far
    test = mannwhitneyu(distances, validation, alternative="greater")
    return {"median_ratio": float(np.median(distances) / np.median(validation)),
            "auc": float(test.statistic / (len(distances) * len(validation))),
            "p_value": float(test.pvalue), "n_validation": int(len(validation))}


def measure(images: str | Path, atlas_dir: Path = DEFAULT_ATLAS, trial: Path | None = None,
            split: str | None = None, search: Path | None = None) -> dict[str, Any]:
    """Read the images, summarise them and place them on the atlas (the meter's result).

    ``search``: a search log folder whose label-free pick is the trial (instead of ``trial``).
    ``atlas_accuracy``: every arm's measured target accuracy in the resembled cell (empty
    when the verdict is outside or the images read as the source), whether or not a model is
    given. With the seeing unread, the model counts as adapted elsewhere only if its depth
    differs; images reading as the source are the model's source domain, a caveat too.

    Raises:
        ShiftError: unusable atlas, trial, or no image that can be measured.
        galaxies.validate.InvalidDatasetError: a bad input file (:mod:`galaxies.cutouts`).
    """
    from galaxies.cutouts import read_cutouts
    from galaxies.shift_stats import summarize

    atlas = load_atlas(atlas_dir)
    if search is not None:
        trial = trial_of_search(search)
    record = model = None
    if trial is not None:  # a bad trial is refused before the images are read
        record, model = trial_record(trial), load_model(trial)
    cutouts = read_cutouts(images, split)
    ok = cutouts.ok
    if not ok.any():
        raise ShiftError(f"{images}: none of the {len(cutouts)} objects can be measured "
                         f"(first reason: {cutouts.status[0]})")
    summary = summarize(cutouts.images[ok])
    place = reading(summary, atlas)
    result = {"images": str(images), "format": cutouts.format, "n_objects": len(cutouts),
              "n_measured": int(ok.sum()), "summary": summary, "reading": place}
    reasons = list(place["reasons"])
    cell = place.get("cell")
    caveat = None
    if trial is not None:
        result["model"] = context = model_context(trial, atlas, cell, record)
        context["ood"] = model_flags(trial, cutouts.images[ok], model)
        flagged = context["ood"].get("flagged")
        flags = flagged is not None and flagged > MODEL_FLAGGED
        if cell == "source" or place["psf_scale"] is not None:
            elsewhere = context["adapted_cell"] != cell
        else:  # the seeing is unread: only the depth can differ
            elsewhere = context["adapted_to"]["limiting_sb"] != atlas["cells"][cell]["limiting_sb"]
        flag_text = (f", and its features flag {100 * flagged:.0f} % of them" if flags else "")
        if flags and (place["outside"] or not elsewhere):
            reasons.append(f"the model's features flag {100 * flagged:.0f} % of the images as "
                           "unlike its target training images")
        elif elsewhere and cell == "source":
            caveat = ("these images are like the simulation's source domain (no sky noise), "
                      "not the model's target" + flag_text
                      + ": apply it with python apply/predict.py --domain source")
        elif elsewhere:
            adapted = context["adapted_cell"] or "a target that is no atlas cell"
            caveat = (f"the model was adapted to {adapted}, not {cell}" + flag_text
                      + f": the atlas's figures in {cell} are for a model adapted to such "
                      "images (retrain with them as the target)")
    outside = bool(reasons)
    placed = cell == "source" or place["psf_scale"] is not None
    result["verdict"] = {"outside": outside, "inside": not outside and placed,
                         "reasons": reasons, "caveat": None if outside else caveat}
    result["atlas_accuracy"] = ({} if outside or cell == "source"
                                else cell_accuracy(atlas, cell))
    return result


def _fmt(values: list[float], digits: int = 1) -> str:
    return ", ".join("—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"
                     for v in values)


def report(result: dict[str, Any]) -> str:
    """The printed lines of a result."""
    r = result["reading"]
    lines = [f"images: {result['n_measured']} of {result['n_objects']} measured "
             f"({result['format']}, {result['images']})",
             f"noise depth SB_lim per filter (mag/arcsec²): {_fmt(r['sb_lim_per_filter'])}",
             f"light size per filter (pixels, median): {_fmt(r['size_per_filter'], 2)}"]
    if r["cell"] == "source":
        lines.append("reading: no sky noise" + ("" if r["outside"] else
                                                " — like the simulation's source domain"))
        if r["outside"]:
            lines.append("the reading is outside the atlas: " + "; ".join(r["reasons"]))
    else:
        psf = r["psf_scale"]
        lines.append(f"reading: SB_lim ≈ {r['sb_lim']:.1f}, seeing ≈ x{psf:.2f} ± "
                     f"{r['psf_scale_err']:.2f}" if psf is not None
                     else f"reading: SB_lim ≈ {r['sb_lim']:.1f}; "
                     + r.get("seeing_note", "seeing not read"))
        if r["outside"]:
            lines.append("the reading is outside the atlas: " + "; ".join(r["reasons"]))
        elif psf is None:
            lines.append(f"nearest atlas cell by the depth alone: {r['cell']} "
                         f"({r['distance']:.2f} grid steps)")
        else:
            lines.append(f"resembles atlas cell {r['cell']} (neighbour {r['neighbour']}; "
                         f"{r['distance']:.2f} grid steps)")
    model = result.get("model")
    if model:
        depth = model["adapted_to"]["limiting_sb"]
        lines.append(f"model: {model['problem']} ({model['trial']}), adapted to "
                     + (f"SB_lim {depth:g}" if isinstance(depth, int | float)
                        else "a target without a recorded SB_lim")
                     + f" and seeing x{model['adapted_to']['psf_scale']:g}"
                     + (f" (cell {model['adapted_cell']})" if model["adapted_cell"] else ""))
        ood = model.get("ood") or {}
        if "flagged" in ood:
            lines.append(f"model's out-of-distribution flag: {100 * ood['flagged']:.1f} % of "
                         f"these images (calibrated to {100 * ood['alpha']:.0f} % of its "
                         "target validation images)")
            lines.append(f"model's feature distance to its target training images: median "
                         f"x{ood['median_ratio']:.2f} that of its {ood['n_validation']} target "
                         f"validation images; P(an image lies farther than a validation image) "
                         f"= {ood['auc']:.2f}, one-sided Mann-Whitney p = {ood['p_value']:.2g}")
        elif ood.get("note"):
            lines.append(f"model's out-of-distribution flag: {ood['note']}")
    verdict = result["verdict"]
    if r["cell"] != "source" and not verdict["outside"]:
        acc = result.get("atlas_accuracy") or {}
        if not acc:
            lines.append(f"atlas target accuracy in {r['cell']}: not measured yet "
                         "(python analysis/shift_atlas.py)")
        else:
            lines.append(f"atlas target accuracy in {r['cell']} (test images, mean ± std over "
                         "training seeds):")
        mine = model["method"] if model else None
        for arm, a in acc.items():
            std = "" if a["std"] is None or not math.isfinite(a["std"]) else \
                f" ± {100 * a['std']:.1f}"
            n = len(a["seeds"])
            lines.append(f"  {arm}: {100 * a['mean']:.1f}{std} % ({n} seed{'s' * (n != 1)})"
                         + ("  <- this model's method" if arm == mine else ""))
    if verdict["outside"]:
        lines.append("verdict: OUTSIDE — " + "; ".join(verdict["reasons"]) + ". Nothing the "
                     "atlas measured says how a model does on these images.")
    elif r["cell"] != "source" and not verdict["inside"]:
        checked = bool(model) and "flagged" in (model.get("ood") or {})
        lines.append(f"verdict: not placed — the depth is {r['cell']}'s, but without the "
                     "seeing a wider PSF or larger galaxies would go unseen (measure at least "
                     f"{MIN_SIZE_IMAGES} images"
                     + ("" if checked else "; a --trial with an OOD reference checks them "
                        "against the model")
                     + ")" + (f"; {verdict['caveat']}" if verdict.get("caveat") else ""))
    elif verdict.get("caveat"):
        lines.append(f"verdict: inside the atlas ({r['cell']}), but {verdict['caveat']}")
    else:
        lines.append(f"verdict: inside the atlas ({r['cell']})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``apply/shift.py`` argument parser."""
    parser = argparse.ArgumentParser(prog="apply/shift.py", description=__doc__.split("\n")[0])
    parser.add_argument("--images", required=True, metavar="PATH",
                        help="HDF5 file, .npy array, FITS cube or folder of FITS files")
    parser.add_argument("--split", choices=("train", "val", "test"), default=None,
                        help="of a project HDF5 file: only this split")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--trial", type=Path, default=None, metavar="DIR",
                       help="a finished trial: the cell it was adapted to and its OOD flags")
    model.add_argument("--search", type=Path, default=None, metavar="LOGDIR",
                       help="a search log folder: its label-free pick, as --trial")
    parser.add_argument("--atlas", type=Path, default=DEFAULT_ATLAS, metavar="DIR",
                        help="the atlas's records (default reports/atlas)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apply/shift.py``; returns the exit status."""
    from galaxies.validate import InvalidDatasetError

    args = build_parser().parse_args(argv)
    if args.trial is not None or args.search is not None:  # a network will run
        from training.denormals import flush_denormals

        flush_denormals()  # before torch's thread pool exists: every thread flushes
    if args.json is not None and (args.json.is_dir() or not args.json.parent.is_dir()):
        print(f"error: --json {args.json}: not a file in an existing folder. Fix: pass a path "
              "whose folder exists", file=sys.stderr)
        return 2
    try:
        result = measure(args.images, args.atlas, args.trial, args.split, args.search)
    except (ShiftError, InvalidDatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        from training.record import write_json

        try:
            write_json(args.json, result)
        except OSError as exc:
            print(f"error: --json {args.json}: cannot be written ({exc.strerror or exc}). "
                  "Fix: pass a path in a folder you can write to", file=sys.stderr)
            return 2
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
