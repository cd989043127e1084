r"""Per-image statistics that need no CNN: layout (framing, flux, colour) and morphology.

Two families of columns, one row per image (see :data:`LAYOUT_COLUMNS` and
:data:`MORPHOLOGY_COLUMNS` for one line each on what a column measures):

* :func:`layout_statistics`: vectorised numpy/scipy measurements of where the light sits in
  the cutout and how much there is: the offset of the light-weighted centroid and of the
  brightest point of the smoothed F160W image from the cutout centre (``peak_offset`` is the
  *framing statistic*: a generator that frames mergers and non-mergers differently shows up
  here), total flux per band, colours, a second-moment size, the background level and the
  number of bright local maxima. Milliseconds per thousand images.
* :func:`morphology_statistics`: the classical merger statistics, measured by statmorph
  (Rodriguez-Gomez et al. 2019, MNRAS 483, 4140) on F160W: Gini and M20 (Lotz, Primack &
  Madau 2004, AJ 128, 163), concentration, asymmetry and smoothness (CAS; Conselice 2003,
  ApJS 147, 1), multimode, intensity and deviation (MID; Freeman et al. 2013, MNRAS 434, 282)
  and shape asymmetry (Pawlik et al. 2016, MNRAS 456, 3032). About 0.3 CPU seconds per
  image (v3 benchmark: 0.32 noiseless source, 0.28 noisy target; stock statmorph with its
  Sersic fit takes twice as long on the source); :func:`morphology_statistics` spreads
  chunks of images over worker processes.
* :func:`image_statistics`: both, as one ``pandas.DataFrame``.

DeepMerge I (Ciprijanovic et al. 2020, Astronomy and Computing 32, 100390) compared its CNN
with exactly these Gini-M20 and CAS statistics on the same kind of simulated HST cutouts; the
statistics here serve the same purpose: a classical baseline (``training/classical.py``) and
an audit of which image cues separate the classes (``benchmarks/cue_audit.py``).

Measurement choices, the same for both domains so that a noiseless source image and its
noisy target copy go through identical code:

* Pixel units are nanomaggies (AB zeropoint 22.5), pixel scale 0.04 arcsec unless the file
  says otherwise (:func:`statistics_settings`); the cutout centre is pixel ``(37, 37)`` of
  the 75 x 75 grid (``(size - 1) / 2``).
* Smoothing: a Gaussian of :data:`SMOOTH_SIGMA_PX` = 1.5 px (about the F160W PSF's sigma).
* Detection threshold on the smoothed F160W image: ``max(DETECT_NSIGMA * sigma_smoothed,
  floor)`` where ``sigma_smoothed = sigma / (2 sqrt(pi) * 1.5)`` is the per-pixel noise after
  smoothing and ``floor`` is the fixed isophote :data:`SEGMENT_SB_MAG` = 22.0 mag/arcsec^2
  (2.5e-3 nanomaggies per 0.04-arcsec pixel). On the v3 benchmark (target sigma 0.004 per pixel) the
  3-sigma level is 22.1 mag/arcsec^2, just below the floor, so both domains are cut at the
  same isophote and a galaxy gets (in expectation) the same segment in both; noisier data
  are cut at 3 sigma instead.
* Segmentation: photutils ``detect_sources`` (8-connected, at least :data:`MIN_SEGMENT_PIXELS`
  pixels, no deblending). The segment containing the centre pixel, else the one with the
  pixel nearest to it, is measured; other segments are masked (statmorph's convention), so a
  companion separated from the primary at this isophote does not enter Gini/M20/CAS/MID.
* Noise: statmorph needs a weight map (per-pixel sigma). Target images use the known sky
  sigma (``attrs["noise_sigma"]``, per filter); noiseless source images use the constant
  :data:`SIGMA_FLOOR` = 1e-3 nanomaggies (a quarter of the v3 target's sigma). The floor
  also bounds statmorph's sky sigma from below: on a noiseless image the sky box holds only
  faint, positive galaxy wings, whose mean exceeds their scatter, and statmorph would flag
  every such image "not background-subtracted". The Sersic fits are skipped (statmorph 0.7.2
  has no switch: the subclass built by ``_morphology_class`` evaluates only the statistics
  above, and memoises the clump areas of the multimode search, which gives identical values
  in half the time), so no PSF is needed; statmorph's outlier rejection is off
  (``n_sigma_outlier=-1``): simulated images have no bad pixels, and on a noiseless image
  the test flags the peak of any symmetric profile.
* Failures: no segment, a statmorph flag above 1 (bad or catastrophic) or an exception give
  NaN statistics and a ``morph_flag`` code (:data:`FLAG_NO_SEGMENT`, :data:`FLAG_ERROR`);
  a batch never stops for one image.
"""

from __future__ import annotations

import math
import multiprocessing
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = [
    "BAND_F160W",
    "FLAG_ERROR",
    "FLAG_NO_SEGMENT",
    "LAYOUT_COLUMNS",
    "MORPHOLOGY_COLUMNS",
    "MORPHOLOGY_FEATURES",
    "image_statistics",
    "layout_statistics",
    "morphology_statistics",
    "segment_threshold",
    "statistics_settings",
]

BAND_F160W = 2  # index of WFC3 F160W in galaxies.schema.FILTERS
BAND_NAMES = ("f814w", "f356w", "f160w")
ZEROPOINT_AB = 22.5  # nanomaggies
PIXEL_SCALE_ARCSEC = 0.04
SMOOTH_SIGMA_PX = 1.5
DETECT_NSIGMA = 3.0
SEGMENT_SB_MAG = 22.0  # mag / arcsec^2: the fixed detection isophote (see the module docstring)
SEGMENT_FLOOR = 10.0 ** (-0.4 * (SEGMENT_SB_MAG - ZEROPOINT_AB)) * PIXEL_SCALE_ARCSEC**2
SIGMA_FLOOR = 1e-3  # nanomaggies per pixel: the weight map of a noiseless image
MIN_SEGMENT_PIXELS = 10
PEAK_FOOTPRINT = 5  # local maxima: the largest value in a 5 x 5 box
PEAK_RELATIVE = 0.1  # n_peaks_10pct: maxima above this fraction of the brightest one
BORDER_PX = 4  # width of the frame whose pixels estimate the background
CHUNK_IMAGES = 16  # images per worker task (at most)
FLAG_NO_SEGMENT = 5  # morph_flag: nothing detected above the threshold
FLAG_ERROR = 6  # morph_flag: statmorph raised an exception

#: Layout columns, one line each on what they measure (F160W unless a band is named).
LAYOUT_COLUMNS: dict[str, str] = {
    "centroid_offset": "distance (px) of the light-weighted centroid (pixels above the "
                       "detection threshold of the smoothed image) from the cutout centre",
    "peak_offset": "distance (px) of the brightest pixel of the smoothed image (sub-pixel, "
                   "parabolic refinement) from the cutout centre: the framing statistic "
                   "(NaN when nothing is above the detection threshold)",
    "flux_f814w": "total flux (sum of all pixels, nanomaggies) in ACS F814W",
    "flux_f356w": "total flux (sum of all pixels, nanomaggies) in NC F356W",
    "flux_f160w": "total flux (sum of all pixels, nanomaggies) in WFC3 F160W",
    "peak_flux": "value of the brightest pixel of the smoothed image (nanomaggies)",
    "ratio_f814w_f160w": "colour: total F814W flux over total F160W flux (NaN if F160W <= 0)",
    "ratio_f356w_f160w": "colour: total F356W flux over total F160W flux (NaN if F160W <= 0)",
    "radius": "second-moment radius (px) about the centroid, sqrt((Ixx + Iyy) / 2), same "
              "pixels as the centroid (the sigma of a round Gaussian)",
    "detected_area": "number of pixels of the smoothed image above the detection threshold",
    "background": "median of the pixels in the outer 4-px frame of the cutout",
    "background_sigma": "robust scatter (1.4826 x MAD) of the outer 4-px frame",
    "n_peaks": "local maxima (5 x 5 box; a flat plateau counts once) of the smoothed image "
               "above the detection threshold",
    "n_peaks_10pct": "local maxima above both the threshold and 10 % of the brightest one",
}

#: statmorph columns (F160W), one line each; the statistics are NaN when morph_flag > 1.
MORPHOLOGY_COLUMNS: dict[str, str] = {
    "gini": "Gini coefficient of the pixel fluxes in the Gini segmap (Lotz et al. 2004)",
    "m20": "M20: normalised second moment of the brightest 20 % of the light (Lotz et al. 2004)",
    "concentration": "C = 5 log10(r80 / r20) (Conselice 2003)",
    "asymmetry": "CAS rotational asymmetry A, background-corrected (Conselice 2003)",
    "smoothness": "CAS smoothness (clumpiness) S (Conselice 2003)",
    "multimode": "MID multimode M: area ratio of the two largest clumps (Freeman et al. 2013)",
    "intensity": "MID intensity I: flux ratio of the two brightest clumps (Freeman et al. 2013)",
    "deviation": "MID deviation D: distance of the brightest clump from the centroid, "
                 "normalised (Freeman et al. 2013)",
    "shape_asymmetry": "asymmetry of the binary detection mask (Pawlik et al. 2016)",
    "n_segments": "number of segments detected above the threshold in the smoothed image",
    "segment_area": "pixels in the measured (central) segment",
    "morph_flag": "statmorph flag (0 good, 1 suspect, 2 bad, 4 catastrophic), 5 = no "
                  "segment, 6 = statmorph raised; statistics are NaN when it is > 1",
}
#: The statmorph statistics proper (what is NaN on a failure).
MORPHOLOGY_FEATURES: tuple[str, ...] = (
    "gini", "m20", "concentration", "asymmetry", "smoothness", "multimode", "intensity",
    "deviation", "shape_asymmetry",
)


def _band_sigma(noise_sigma: float | Sequence[float] | None, band: int) -> float | None:
    """The per-pixel noise sigma of ``band`` from a scalar or a per-filter sequence."""
    if noise_sigma is None:
        return None
    values = np.atleast_1d(np.asarray(noise_sigma, dtype=np.float64))
    value = float(values[band] if values.size > 1 else values[0])
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"noise_sigma must be finite and >= 0, got {value}")
    return value


def _border(images: np.ndarray) -> np.ndarray:
    """The pixels of the outer ``BORDER_PX`` frame of [N, H, W] images, as [N, n_border]."""
    n, h, w = images.shape
    frame = np.zeros((h, w), dtype=bool)
    frame[:BORDER_PX] = frame[-BORDER_PX:] = True
    frame[:, :BORDER_PX] = frame[:, -BORDER_PX:] = True
    return images[:, frame]


def border_sigma(images: np.ndarray) -> np.ndarray:
    """Robust per-image noise estimate: 1.4826 x MAD of the border frame of [N, H, W] images."""
    pixels = _border(np.asarray(images, dtype=np.float64))
    median = np.median(pixels, axis=1, keepdims=True)
    return 1.4826 * np.median(np.abs(pixels - median), axis=1)


def segment_threshold(sigma: float | np.ndarray,
                      pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC) -> float | np.ndarray:
    """Detection threshold on the smoothed image for per-pixel noise ``sigma`` (nanomaggies).

    ``max(DETECT_NSIGMA * sigma / (2 sqrt(pi) SMOOTH_SIGMA_PX), floor)``: 3 sigma of the
    smoothed noise, but never below the fixed isophote ``SEGMENT_SB_MAG`` (``floor`` is its
    flux per pixel of ``pixel_scale_arcsec``; :data:`SEGMENT_FLOOR` at 0.04 arcsec).
    """
    floor = 10.0 ** (-0.4 * (SEGMENT_SB_MAG - ZEROPOINT_AB)) * pixel_scale_arcsec**2
    smoothed = np.asarray(sigma, dtype=np.float64) / (2.0 * math.sqrt(math.pi) * SMOOTH_SIGMA_PX)
    result = np.maximum(DETECT_NSIGMA * smoothed, floor)
    return float(result) if np.ndim(result) == 0 else result


def statistics_settings(attrs: dict) -> dict[str, object]:
    """The measurement settings a domain file's attributes imply, as keyword arguments.

    ``{"noise_sigma": per-filter sky sigma (None if not recorded: estimated from the border
    frame), "pixel_scale_arcsec": the file's pixel scale (0.04 if not recorded)}``, for
    :func:`image_statistics`, :func:`layout_statistics` and :func:`morphology_statistics`.
    """
    sigma = attrs.get("noise_sigma")
    if sigma is not None:
        values = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
        sigma = values.tolist() if np.all(np.isfinite(values)) and np.all(values >= 0) else None
    scale = attrs.get("pixel_scale_arcsec")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        scale = PIXEL_SCALE_ARCSEC
    if not (math.isfinite(scale) and scale > 0):
        scale = PIXEL_SCALE_ARCSEC
    return {"noise_sigma": sigma, "pixel_scale_arcsec": scale}


def _resolve_sigma(images_band: np.ndarray, noise_sigma, band: int) -> np.ndarray:
    """Per-image noise sigma of one band: the known value, else the border estimate."""
    known = _band_sigma(noise_sigma, band)
    if known is None:
        return border_sigma(images_band)
    return np.full(len(images_band), known)


def _smooth(images_band: np.ndarray) -> np.ndarray:
    """Gaussian smoothing (``SMOOTH_SIGMA_PX``) of [N, H, W] images, image by image."""
    return ndimage.gaussian_filter(images_band, sigma=(0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX),
                                   mode="constant", cval=0.0)


def _subpixel_peak(smoothed: np.ndarray, iy: np.ndarray, ix: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Refine integer peak positions by a 1-D parabola through the peak and its neighbours."""
    n, h, w = smoothed.shape
    rows = np.arange(n)

    def refine(centre_idx, size, take):
        inside = (centre_idx > 0) & (centre_idx < size - 1)
        lo = take(np.clip(centre_idx - 1, 0, size - 1))
        mid = take(centre_idx)
        hi = take(np.clip(centre_idx + 1, 0, size - 1))
        denom = lo - 2.0 * mid + hi
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(inside & (denom < 0), 0.5 * (lo - hi) / denom, 0.0)
        return centre_idx + np.clip(shift, -0.5, 0.5)

    y = refine(iy, h, lambda j: smoothed[rows, j, ix])
    x = refine(ix, w, lambda j: smoothed[rows, iy, j])
    return y, x


def _count_regions(masks: np.ndarray) -> np.ndarray:
    """Number of 8-connected regions of each [H, W] mask of [N, H, W] (a plateau counts once)."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # connect within an image, never across images
    labels, _ = ndimage.label(masks, structure=structure)
    counts = np.zeros(len(masks))
    for i, image_labels in enumerate(labels):
        counts[i] = np.unique(image_labels[image_labels > 0]).size
    return counts


def layout_statistics(images: np.ndarray, noise_sigma: float | Sequence[float] | None = None,
                      band: int = BAND_F160W,
                      pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC) -> pd.DataFrame:
    """Framing, flux, colour, size, background and peak counts of every image (vectorised).

    Args:
        images: [N, 3, H, W] images in nanomaggies (band order of ``galaxies.schema.FILTERS``).
        noise_sigma: per-pixel sky sigma, a scalar or one value per filter; it sets the
            detection threshold (:func:`segment_threshold`). ``0`` for noiseless images;
            ``None`` estimates it per image from the border frame.
        band: the band the spatial statistics are measured in (default F160W).
        pixel_scale_arcsec: pixel scale (sets the per-pixel flux of the fixed isophote).

    Returns:
        One row per image, the columns of :data:`LAYOUT_COLUMNS`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != len(BAND_NAMES):
        raise ValueError(f"images must be [N, 3, H, W], got shape {images.shape}")
    n, _, h, w = images.shape
    x = images[:, band].astype(np.float64)
    centre_y, centre_x = (h - 1) / 2.0, (w - 1) / 2.0
    sigma = _resolve_sigma(x, noise_sigma, band)
    threshold = np.asarray(segment_threshold(sigma, pixel_scale_arcsec))[:, None, None]
    smoothed = _smooth(x)
    above = smoothed > threshold

    # Centroid and second moments of the detected light (whole positive image if none).
    weights = np.where(above, np.clip(x, 0.0, None), 0.0)
    empty = weights.sum(axis=(1, 2)) <= 0
    weights[empty] = np.clip(x[empty], 0.0, None)
    total_w = weights.sum(axis=(1, 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cy = (weights * yy).sum(axis=(1, 2)) / total_w
        cx = (weights * xx).sum(axis=(1, 2)) / total_w
        var = (weights * ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)
               ).sum(axis=(1, 2)) / total_w
    radius = np.sqrt(var / 2.0)

    flat = smoothed.reshape(n, -1)
    peak_index = flat.argmax(axis=1)
    iy, ix = np.divmod(peak_index, w)
    py, px = _subpixel_peak(smoothed, iy, ix)
    peak_flux = flat[np.arange(n), peak_index]

    local_max = (ndimage.maximum_filter(smoothed, size=(1, PEAK_FOOTPRINT, PEAK_FOOTPRINT),
                                        mode="constant", cval=-np.inf) == smoothed)
    peaks = local_max & above
    bright = peaks & (smoothed >= PEAK_RELATIVE * peak_flux[:, None, None])
    detected = above.any(axis=(1, 2))

    fluxes = images.astype(np.float64).sum(axis=(2, 3))
    border = _border(x)
    background = np.median(border, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f160 = fluxes[:, BAND_F160W]
        positive = f160 > 0
        ratio_814 = np.where(positive, fluxes[:, 0] / f160, np.nan)
        ratio_356 = np.where(positive, fluxes[:, 1] / f160, np.nan)
    columns = {
        "centroid_offset": np.hypot(cy - centre_y, cx - centre_x),
        "peak_offset": np.where(detected, np.hypot(py - centre_y, px - centre_x), np.nan),
        "flux_f814w": fluxes[:, 0],
        "flux_f356w": fluxes[:, 1],
        "flux_f160w": fluxes[:, 2],
        "peak_flux": peak_flux,
        "ratio_f814w_f160w": ratio_814,
        "ratio_f356w_f160w": ratio_356,
        "radius": radius,
        "detected_area": above.sum(axis=(1, 2)).astype(np.float64),
        "background": background,
        "background_sigma": 1.4826 * np.median(np.abs(border - background[:, None]), axis=1),
        "n_peaks": _count_regions(peaks),
        "n_peaks_10pct": _count_regions(bright),
    }
    return pd.DataFrame(columns, columns=list(LAYOUT_COLUMNS))


# --------------------------------------------------------------------------------------------
# statmorph


def _morphology_class():
    """The ``statmorph.SourceMorphology`` subclass: no Sersic fits, a floored sky sigma.

    Built on first use so that importing this module does not import statmorph. It relies on
    statmorph 0.7.2's ``_calculate_morphology`` hook (which evaluates every lazy property)
    and on ``sky_sigma`` being a lazy property.
    """
    global _MORPHOLOGY_CLASS
    if _MORPHOLOGY_CLASS is not None:
        return _MORPHOLOGY_CLASS
    import statmorph
    from astropy.utils import lazyproperty
    from statmorph.statmorph import _quantile

    measured = (*MORPHOLOGY_FEATURES, "sky_mean", "sky_sigma")
    connectivity_8 = ndimage.generate_binary_structure(2, 2)

    class _Morphology(statmorph.SourceMorphology):
        def __init__(self, *args, sky_sigma_floor: float = 0.0, **kwargs):
            self._sky_sigma_floor = sky_sigma_floor
            self._clump_areas: dict[float, np.ndarray] = {}
            super().__init__(*args, **kwargs)

        def _calculate_morphology(self):
            for name in measured:
                _ = self[name]

        def _multimode_function(self, q):
            # statmorph's own function, memoised on the threshold (the areas depend on it
            # alone; most quantiles of the mostly-zero MID cutout share the threshold 0) and
            # with bincount for unique: the same areas, several times faster.
            threshold = float(_quantile(self._sorted_pixelvals_mid, q))
            areas = self._clump_areas.get(threshold)
            if areas is None:
                labels, _ = ndimage.label(self._cutout_mid >= threshold,
                                          structure=connectivity_8)
                areas = np.sort(np.bincount(labels.ravel())[1:])[::-1]
                self._clump_areas[threshold] = areas
            return areas

        @lazyproperty
        def sky_sigma(self):
            bkg = self._cutout_stamp_maskzeroed[self._slice_skybox]
            if bkg.size == 0:  # no sky box: statmorph has set flag 2
                return -99.0
            return max(float(np.std(bkg)), self._sky_sigma_floor)

    _MORPHOLOGY_CLASS = _Morphology
    return _Morphology


_MORPHOLOGY_CLASS = None


def _nan_row(flag: int, n_segments: int = 0, segment_area: int = 0) -> dict[str, float]:
    row = dict.fromkeys(MORPHOLOGY_FEATURES, math.nan)
    row.update(n_segments=float(n_segments), segment_area=float(segment_area),
               morph_flag=float(flag))
    return row


def _central_segment(segmap: np.ndarray) -> int:
    """The label of the segment containing the centre pixel, else the nearest one's."""
    h, w = segmap.shape
    cy, cx = (h - 1) // 2, (w - 1) // 2
    label = int(segmap[cy, cx])
    if label:
        return label
    ys, xs = np.nonzero(segmap)
    nearest = np.argmin((ys - cy) ** 2 + (xs - cx) ** 2)
    return int(segmap[ys[nearest], xs[nearest]])


def _measure_one(image: np.ndarray, sigma: float, threshold: float) -> dict[str, float]:
    """The statmorph statistics of one 2-D image (noise ``sigma``, detection ``threshold``).

    Never raises: a failure is a row of NaN statistics with its ``morph_flag``.
    """
    from photutils.segmentation import detect_sources

    n_segments = area = 0
    try:
        image = np.asarray(image, dtype=np.float64)
        smoothed = ndimage.gaussian_filter(image, SMOOTH_SIGMA_PX, mode="constant", cval=0.0)
        segments = detect_sources(smoothed, threshold,
                                  n_pixels=MIN_SEGMENT_PIXELS, connectivity=8)
        if segments is None or segments.nlabels == 0:
            return _nan_row(FLAG_NO_SEGMENT)
        data = segments.data
        n_segments = int(segments.nlabels)
        label = _central_segment(data)
        segmap = (data == label).astype(np.int32)
        area = int(segmap.sum())
        mask = (data != 0) & (data != label)
        weightmap = np.full(image.shape, max(sigma, SIGMA_FLOOR))
        morph = _morphology_class()(image, segmap, 1, mask=mask, weightmap=weightmap,
                                    n_sigma_outlier=-1, sky_sigma_floor=max(sigma, SIGMA_FLOOR))
        flag = int(morph.flag)
    except Exception:  # noqa: BLE001 - one bad image must not stop the batch
        return _nan_row(FLAG_ERROR, n_segments, area)
    if flag > 1:
        return _nan_row(flag, n_segments, area)
    row = {name: float(morph[name]) for name in MORPHOLOGY_FEATURES}
    row = {name: value if math.isfinite(value) and value != -99.0 else math.nan
           for name, value in row.items()}
    row.update(n_segments=float(n_segments), segment_area=float(area), morph_flag=float(flag))
    return row


def _measure_chunk(images: np.ndarray, sigmas: np.ndarray,
                   thresholds: np.ndarray) -> list[dict[str, float]]:
    """The statmorph statistics of a chunk of 2-D images (a worker task)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [_measure_one(image, float(sigma), float(threshold))
                for image, sigma, threshold in zip(images, sigmas, thresholds, strict=True)]


def morphology_statistics(images: np.ndarray, noise_sigma: float | Sequence[float] | None,
                          band: int = BAND_F160W, workers: int = 2, progress: bool = True,
                          pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC) -> pd.DataFrame:
    """Gini, M20, C, A, S, M, I, D and shape asymmetry (statmorph) of every image, with its flag.

    Deterministic: the same images give the same table for any ``workers``.

    Args:
        images: [N, 3, H, W] images in nanomaggies.
        noise_sigma: per-pixel sky sigma (scalar or one value per filter); ``0`` for noiseless
            images; ``None`` estimates it per image from the border frame.
        band: the band measured (default F160W).
        workers: worker processes (``1`` = in this process).
        progress: show a tqdm progress bar.
        pixel_scale_arcsec: pixel scale (sets the per-pixel flux of the fixed isophote).

    Returns:
        One row per image, the columns of :data:`MORPHOLOGY_COLUMNS`.
    """
    from tqdm.auto import tqdm

    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {images.shape}")
    x = images[:, band]
    sigmas = _resolve_sigma(x, noise_sigma, band)
    thresholds = np.atleast_1d(segment_threshold(sigmas, pixel_scale_arcsec))
    # at most CHUNK_IMAGES per task, and at least 4 tasks per worker when there are few images
    chunk = max(1, min(CHUNK_IMAGES, math.ceil(len(x) / (4 * max(workers, 1)))))
    starts = range(0, len(x), chunk)
    rows: list[dict[str, float]] = []
    with tqdm(total=len(x), desc="statmorph", unit="img", disable=not progress) as bar:
        if workers <= 1 or len(x) <= 1:
            for s in starts:
                rows += _measure_chunk(x[s : s + chunk], sigmas[s : s + chunk],
                                       thresholds[s : s + chunk])
                bar.update(len(x[s : s + chunk]))
        else:
            # fork, as galaxies/simulate.py: no __main__ guard needed in callers, no re-import
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_measure_chunk, np.ascontiguousarray(x[s : s + chunk]),
                                       sigmas[s : s + chunk], thresholds[s : s + chunk])
                           for s in starts]
                for future in futures:  # in order: the table follows the images
                    chunk = future.result()
                    rows += chunk
                    bar.update(len(chunk))
    return pd.DataFrame(rows, columns=list(MORPHOLOGY_COLUMNS), dtype=np.float64)


def image_statistics(images: np.ndarray, noise_sigma: float | Sequence[float] | None,
                     workers: int = 2, progress: bool = True,
                     pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC) -> pd.DataFrame:
    """Layout and statmorph statistics of every image (F160W), as one table.

    Args:
        images: [N, 3, H, W] images in nanomaggies.
        noise_sigma: per-pixel sky sigma (scalar or one value per filter; ``0`` for
            noiseless images, ``None`` to estimate it from the border frame).
        workers: worker processes for statmorph (``1`` = in this process).
        progress: show a progress bar.
        pixel_scale_arcsec: pixel scale (sets the per-pixel flux of the fixed isophote);
            :func:`statistics_settings` reads it and ``noise_sigma`` from a file's attributes.

    Returns:
        One row per image: the columns of :data:`LAYOUT_COLUMNS`, then those of
        :data:`MORPHOLOGY_COLUMNS`.
    """
    layout = layout_statistics(images, noise_sigma, pixel_scale_arcsec=pixel_scale_arcsec)
    morphology = morphology_statistics(images, noise_sigma, workers=workers, progress=progress,
                                       pixel_scale_arcsec=pixel_scale_arcsec)
    return pd.concat([layout, morphology], axis=1)
