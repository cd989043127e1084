r"""How far a set of images is from the simulation, along the simulator's own shift axes.

Physical statistics of each image and filter (issue 26, the shift meter and atlas):

* **Noise depth.** The sky noise of an image, :math:`\hat\sigma`, from the pixels of its outer
  frame (:data:`FRAME` pixels wide, where the galaxies' light is faint): the normalised median
  absolute deviation, :math:`\hat\sigma = 1.4826\,\mathrm{median}|x - \mathrm{median}(x)|`,
  robust to the odd companion that reaches the frame. Converted to the limiting surface
  brightness it corresponds to by inverting ``galaxies.simulate.noise_sigma``,

  .. math:: \mathrm{SB}_\mathrm{lim} = m_0 - 2.5\log_{10}\frac{\hat\sigma}{\sqrt{A}\,p},

  with :math:`m_0` the AB zero point of the pixel unit (22.5 for nanomaggies), :math:`A` =
  1 arcsec² the reference area and :math:`p` the pixel scale (arcsec). A noiseless image has
  :math:`\hat\sigma = 0`, shown as :data:`NOISELESS_SB`.
* **Light size.** The adaptive second-moment size :math:`\sigma_\mathrm{mom}` (pixels) of the
  light, by GalSim's HSM (``galsim.hsm.FindAdaptiveMom``, the weight matched to the object):
  for a galaxy convolved with a PSF, :math:`\sigma^2_\mathrm{mom} \approx \sigma^2_\mathrm{gal}
  + \sigma^2_\mathrm{PSF}`, so a wider PSF moves the distribution of sizes up. NaN where HSM
  fails (no light above the noise). A single image says little; the median over many does.
* **Core size.** The second-moment size of the light's brightest core under a *fixed*
  Gaussian weight :math:`w(\mathbf r) = \exp(-|\mathbf r|^2 / 2\sigma_w^2)`,
  :math:`\sigma_w` = :data:`CORE_WEIGHT_SIGMA` px, centred on the brightest pixel of the
  image smoothed by a 1-px Gaussian,

  .. math:: \sigma^2_\mathrm{core} = \frac{\sum w I\,|\mathbf r - \bar{\mathbf r}|^2}
            {2\sum w I}.

  The seeing reading of the meter uses it: a galaxy's nucleus is compact, so its core's
  width follows the PSF, while the adaptive size follows the whole system, and a merger
  (two galaxies) is larger than a single galaxy. On development data seed 2 (400 mergers +
  400 non-mergers, SB_lim 25, target PSF ×1, ×1.25, ×1.5; ``benchmarks/results/shift.md``)
  the mergers' and non-mergers' median sizes differ by 0.9-2.2 PSF steps of ×0.25 for the
  adaptive size, by 0.3-0.5 of a step for the core: a set of only mergers or only
  non-mergers is read close to its cell instead of one to two cells off.

Both assume the project's pixel convention (nanomaggies, 0.04"/pixel): images in other units
(counts, an 8-bit stretch) land far from every simulated set, which is what the meter should
say about them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from galaxies.morphology import PIXEL_SCALE_ARCSEC, ZEROPOINT_AB

FRAME = 6  #: width (pixels) of the outer frame the noise is measured on
#: σ_w (pixels) of the core size's fixed weight: chosen on development data seed 2 among
#: 1.5, 2 and 3 px (the class gap per PSF step 0.2-0.4, 0.3-0.5, 0.5-0.8; the noise-depth
#: dependence largest at 1.5 px)
CORE_WEIGHT_SIGMA = 2.0
NOISELESS_SB = 40.0  #: the SB_lim shown for images without measurable noise (mag/arcsec^2)
MAD_TO_SIGMA = 1.4826


def frame_pixels(images: np.ndarray, width: int = FRAME) -> np.ndarray:
    """The outer frame of every image and filter, ``[N, C, P]`` (P frame pixels)."""
    n, c, h, w = images.shape
    mask = np.ones((h, w), dtype=bool)
    mask[width:h - width, width:w - width] = False
    return images.reshape(n, c, h * w)[:, :, mask.ravel()]


def noise_sigma(images: np.ndarray) -> np.ndarray:
    """Robust sky noise of each image and filter, ``[N, C]`` (pixel units)."""
    frame = frame_pixels(np.asarray(images, dtype=np.float64))
    median = np.median(frame, axis=2, keepdims=True)
    return MAD_TO_SIGMA * np.median(np.abs(frame - median), axis=2)


def limiting_sb(sigma: np.ndarray | float, pixel_scale: float = PIXEL_SCALE_ARCSEC,
                zeropoint: float = ZEROPOINT_AB, area_arcsec2: float = 1.0) -> np.ndarray:
    """SB_lim (mag/arcsec², 1 sigma over ``area_arcsec2``) of a per-pixel noise ``sigma``."""
    sigma = np.asarray(sigma, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sb = zeropoint - 2.5 * np.log10(sigma / (math.sqrt(area_arcsec2) * pixel_scale))
    return np.where(sigma > 0, sb, NOISELESS_SB)


def light_size(images: np.ndarray) -> np.ndarray:
    """Adaptive-moment size (pixels) of each image and filter, ``[N, C]``; NaN where HSM fails."""
    import galsim

    images = np.asarray(images, dtype=np.float64)
    out = np.full(images.shape[:2], np.nan)
    for i in range(images.shape[0]):
        for band in range(images.shape[1]):
            try:
                moments = galsim.hsm.FindAdaptiveMom(galsim.Image(images[i, band]), strict=False)
            except (galsim.GalSimError, RuntimeError, ValueError):
                continue
            if moments.moments_status == 0 and moments.moments_sigma > 0:
                out[i, band] = moments.moments_sigma
    return out


def core_size(images: np.ndarray, weight_sigma: float = CORE_WEIGHT_SIGMA) -> np.ndarray:
    """Fixed-weight second-moment size (pixels) of each image's brightest core, ``[N, C]``.

    NaN where the weighted light is not positive (blank or negative images).
    """
    from scipy import ndimage

    images = np.asarray(images, dtype=np.float64)
    n, c, h, w = images.shape
    half = int(3 * weight_sigma)
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    weight = np.exp(-(xx ** 2 + yy ** 2) / (2 * weight_sigma ** 2))
    out = np.full((n, c), np.nan)
    if h <= 2 * half or w <= 2 * half:
        return out
    for i in range(n):
        for band in range(c):
            image = images[i, band]
            smooth = ndimage.gaussian_filter(image, 1.0)[half:h - half, half:w - half]
            y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
            patch = image[y:y + 2 * half + 1, x:x + 2 * half + 1] * weight
            total = patch.sum()
            if not total > 0:
                continue
            my, mx = (patch * yy).sum() / total, (patch * xx).sum() / total
            second = (patch * ((yy - my) ** 2 + (xx - mx) ** 2)).sum() / (2 * total)
            if second > 0:
                out[i, band] = math.sqrt(second)
    return out


def sky_offset(images: np.ndarray) -> np.ndarray:
    """Per filter, the median frame level in units of the median frame noise, ``[C]``.

    About 0 for sky-subtracted images (the project's convention); a large value means a sky
    pedestal (or other units). NaN where there is no noise to compare with.
    """
    frame = frame_pixels(np.asarray(images, dtype=np.float64))
    level = np.median(np.median(frame, axis=2), axis=0)
    sigma = np.median(noise_sigma(images), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sigma > 0, level / sigma, np.nan)


def summarize(images: np.ndarray) -> dict[str, Any]:
    """Per filter: the median SB_lim and light size of a set, with their bootstrap spread.

    ``{"n": N, "sb_lim": [C], "sb_lim_err": [C], "size": [C], "size_err": [C],
    "size_ok": [C], "size_n": [C], "core": [C], "core_err": [C], "core_n": [C],
    "sky_offset": [C]}``: medians over the images, and the std of the median over 200
    bootstrap resamples (seed 0) as its uncertainty; ``size_ok`` is the fraction HSM measured
    and ``size_n`` their number; ``core`` is :func:`core_size`'s median and ``core_n`` the
    images it measured; ``sky_offset`` is :func:`sky_offset`.
    """
    images = np.asarray(images)
    sb = limiting_sb(noise_sigma(images))
    size = light_size(images)
    core = core_size(images)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(images), size=(200, len(images)))

    def median_and_err(values: np.ndarray) -> tuple[list[float], list[float]]:
        import warnings

        medians, errs = [], []
        with warnings.catch_warnings():  # a bootstrap draw of only NaN sizes is NaN, as meant
            warnings.simplefilter("ignore", RuntimeWarning)
            for band in range(values.shape[1]):
                column = values[:, band]
                medians.append(float(np.nanmedian(column)) if np.isfinite(column).any()
                               else math.nan)
                boot = np.nanmedian(column[picks], axis=1) if np.isfinite(column).any() else []
                errs.append(float(np.nanstd(boot)) if len(boot) else math.nan)
        return medians, errs

    sb_median, sb_err = median_and_err(sb)
    size_median, size_err = median_and_err(size)
    core_median, core_err = median_and_err(core)
    return {"n": int(len(images)), "sb_lim": sb_median, "sb_lim_err": sb_err,
            "size": size_median, "size_err": size_err,
            "size_ok": [float(np.isfinite(size[:, b]).mean()) for b in range(size.shape[1])],
            "size_n": [int(np.isfinite(size[:, b]).sum()) for b in range(size.shape[1])],
            "core": core_median, "core_err": core_err,
            "core_n": [int(np.isfinite(core[:, b]).sum()) for b in range(core.shape[1])],
            "sky_offset": [float(v) for v in sky_offset(images)]}
