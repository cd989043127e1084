"""Galaxy and merger models for the simulated benchmark (GalSim profiles + numpy sampling).

A *scene* is a list of ``Component``: a GalSim profile of unit flux, placed and distorted on
the sky, and its flux in each filter of ``galaxies.schema.FILTERS`` in nanomaggies
(AB zeropoint 22.5). ``render`` convolves the scene with each filter's PSF (``PSF_MODELS``,
or one widened by ``psf_scale`` for a target with worse seeing) and draws it on the 75 x 75
pixel grid, so one scene gives one [3, 75, 75] image.

Physics, deliberately simple and stated here so that the knobs below make sense:

* Galaxies at z = 2 are small: the F160W magnitude of the *primary* galaxy (the galaxy the
  cutout is made for: a non-merger, or the brighter galaxy of a merging pair) is uniform in
  ``PRIMARY_MAG_RANGE`` (20.0-23.0 AB: massive galaxies, bright enough that their bodies stay
  visible in the noisy target, as in the seed paper's noisy images). Generator v4 selects on
  the primary, as the Illustris sample is selected on the stellar mass of one subhalo
  (F160W is rest-frame optical at z = 2 and tracks stellar mass); a merger's companion adds
  its own light on top (v3 drew the *pair's* total instead, so a merger's primary was fainter
  than a non-merger of the same system magnitude). Half-light radii are log-normal around
  0.2 arcsec (about 1.7 kpc at z = 2). With the default target noise (SB_lim = 25,
  ``galaxies.simulate``) the brightest F160W pixel of the median galaxy is at S/N ~ 5
  (10th-90th percentile 1.5-17; F356W: 15, 4.5-59; measured on v3): bodies stay visible
  while tidal light sinks into the noise. Generator v2 used 22.5-25.5 AB, which put the
  median galaxy's brightest pixel at S/N 0.5, i.e. most target galaxies were undetectable.
* A galaxy is a Sersic bulge (n on the grid ``BULGE_N_GRID``; bulge-to-total uniform in
  ``BULGE_FRACTION_RANGE``) plus a disk (n on ``DISK_N_GRID``, inclined: axis ratio 0.25-1)
  plus star-forming clumps (small Gaussians). Sersic indices come from a fixed grid because
  GalSim rebuilds its tables for every new index (measured: ~32 ms per render with a
  continuous index, ~10x less on a fixed grid).
* Colours follow the rest-frame UV/optical/near-IR seen by F814W/F356W/F160W at z = 2:
  old bulges are red (faint in F814W, bright in F356W), disks bluer, clumps bluest. Colours
  are AB magnitudes relative to F160W (``*_COLOURS``: ranges of m_F814W - m_F160W and
  m_F356W - m_F160W).
* Framing (generator v4): every cutout is centred on its primary galaxy with the same small
  random pointing offset (``CENTRE_JITTER_ARCSEC``, per axis) for both classes, as the
  published DeepMerge cutouts are centred on the Illustris subhalo; a merger's companion,
  not its primary, sits off centre. (v3 centred a merger on the pair's light-weighted
  centroid, so the brightest point of a merger sat off centre while a non-merger's did not:
  a framing cue that survives the noise, AUC 0.83.)
* Mergers: two galaxies with F160W flux ratio log-uniform in ``FLUX_RATIO_RANGE`` at
  projected separation ``SEPARATION_RANGE`` (a third of them close to coalescence), each
  with tidal distortions: an asymmetric shear, a bulge offset from the disk centre
  (lopsidedness), one or two tidal tails of unequal length and brightness (chains of
  elongated Gaussians along curved arcs) and sometimes a bridge between the nuclei. The
  tidal light is faint (``TAIL_FRACTION_RANGE`` of the galaxy's flux, spread over a large
  area), so sky noise at SB_lim = 25 buries much of it.
* Non-mergers: one galaxy, sometimes with faint symmetric spiral arms (which look like tidal
  arcs in a single image), clumps, and with probability ``NEIGHBOUR_PROB`` a faint unrelated
  neighbour (chance projection), so that "two blobs" is not the label by itself. With
  probability ``MINOR_INTERACTION_PROB`` a non-merger has a *minor* interaction: a companion
  below the major-merger cut (flux ratio ``MINOR_FLUX_RATIO_RANGE``) with tidal tails of its
  own, and faint tidal debris around the primary. The label is a major-merger label, as in
  simulation merger catalogues with a mass-ratio cut, so faint tidal features alone do not
  make a merger; the label rests on the bright structure (companion brightness and distance,
  distorted, lopsided bodies), which survives the target noise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import galsim
import numpy as np

from galaxies.schema import FILTERS, IMAGE_SIZE

PIXEL_SCALE_ARCSEC = 0.04
ZEROPOINT_AB = 22.5  # pixel unit: nanomaggies, m_AB = 22.5 - 2.5 log10(flux)
# PSF per filter (same order as FILTERS): (kind, FWHM arcsec, Moffat beta or None).
PSF_MODELS: tuple[tuple[str, float, float | None], ...] = (
    ("moffat", 0.09, 3.0),  # HST ACS F814W: near diffraction limit + charge diffusion wings
    ("airy", 0.12, None),  # JWST NIRCam F356W: diffraction limited, 1.03 lambda/D
    ("moffat", 0.18, 2.5),  # HST WFC3/IR F160W: broadened by the 0.13" native pixels
)
GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)

PRIMARY_MAG_RANGE = (20.0, 23.0)  # F160W AB magnitude of the galaxy the cutout is centred on
CENTRE_JITTER_ARCSEC = 0.05  # 1-sigma pointing offset of the primary per axis, both classes
HLR_MEDIAN_ARCSEC = 0.2
HLR_LOG_SIGMA = 0.35
HLR_RANGE_ARCSEC = (0.07, 0.5)
BULGE_N_GRID = (2.0, 2.5, 3.0, 4.0)
DISK_N_GRID = (0.5, 1.0, 1.0, 1.5)
BULGE_FRACTION_RANGE = (0.0, 0.7)
CLUMP_FRACTION_RANGE = (0.0, 0.25)  # of the disk's F160W flux
MAX_CLUMPS = 6
# Colour ranges (m_F814W - m_F160W, m_F356W - m_F160W), AB magnitudes.
BULGE_COLOURS = ((1.2, 2.2), (-1.0, -0.5))
DISK_COLOURS = ((0.2, 0.8), (-0.5, -0.1))
CLUMP_COLOURS = ((-0.3, 0.3), (0.0, 0.5))

FLUX_RATIO_RANGE = (1.0, 8.0)  # primary / secondary, log-uniform
SEPARATION_RANGE = (0.3, 1.1)  # arcsec; 1 arcsec is about 8.4 kpc at z = 2
CLOSE_SEPARATION_RANGE = (0.06, 0.3)
CLOSE_FRACTION = 0.3
TAIL_FRACTION_RANGE = (0.03, 0.2)  # of each galaxy's flux, in its tidal features
TIDAL_SHEAR_MAX = 0.25
BRIDGE_PROB = 0.5
SPIRAL_ARM_PROB = 0.35
NEIGHBOUR_PROB = 0.25
NEIGHBOUR_MAG_OFFSET = (1.5, 4.0)  # fainter than the galaxy by this many magnitudes
NEIGHBOUR_DISTANCE_ARCSEC = (0.6, 1.3)
# Minor interactions among non-mergers: the merger label is a *major*-merger cut (here: flux
# ratio <= FLUX_RATIO_RANGE[1]), so a galaxy with a minor companion below the cut, and the
# faint tidal debris that companion raises, is a non-merger. Faint tidal features are then
# not exclusive to mergers.
MINOR_INTERACTION_PROB = 0.5
MINOR_FLUX_RATIO_RANGE = (8.0, 30.0)  # primary / companion, log-uniform


class Component(NamedTuple):
    """One piece of a scene: a unit-flux placed profile and its flux per filter (nanomaggies)."""

    profile: galsim.GSObject
    flux: np.ndarray


def mag_to_flux(mag: float) -> float:
    """AB magnitude -> nanomaggies."""
    return 10.0 ** (-0.4 * (mag - ZEROPOINT_AB))


def filter_fluxes(rng: np.random.Generator, f160: float, colours) -> np.ndarray:
    """Fluxes in (F814W, F356W, F160W) for an F160W flux and colour ranges relative to F160W."""
    c814, c356 = rng.uniform(*colours[0]), rng.uniform(*colours[1])
    return f160 * 10.0 ** (-0.4 * np.array([c814, c356, 0.0]))


_PSFS: dict[tuple[float, ...], list[galsim.GSObject]] = {}


def psf_fwhms(scale: tuple[float, ...] = (1.0, 1.0, 1.0)) -> list[float]:
    """FWHM (arcsec) of each filter's PSF widened by ``scale`` (one factor per filter).

    A factor of exactly 1 keeps the value of ``PSF_MODELS`` itself; others are rounded to 12
    decimals so that the attribute reads as the number meant (0.135, not 0.13499999999999998).
    """
    return [fwhm if factor == 1.0 else round(fwhm * factor, 12)
            for (_, fwhm, _), factor in zip(PSF_MODELS, scale, strict=True)]


def psfs(scale: tuple[float, ...] = (1.0, 1.0, 1.0)) -> list[galsim.GSObject]:
    """The PSF of each filter, its FWHM times ``scale``, built once per process and reused.

    Widening keeps the profile: a Moffat keeps its beta, an Airy its shape (a larger
    lambda/D), so the whole profile is stretched by the factor at unit flux.
    """
    key = tuple(float(factor) for factor in scale)
    if key not in _PSFS:
        built = []
        for (kind, _, beta), fwhm in zip(PSF_MODELS, psf_fwhms(key), strict=True):
            if kind == "airy":
                psf = galsim.Airy(lam_over_diam=fwhm / 1.028993969962188, gsparams=GSPARAMS)
            else:
                psf = galsim.Moffat(beta=beta, fwhm=fwhm, gsparams=GSPARAMS)
            built.append(psf)
        _PSFS[key] = built
    return _PSFS[key]


def render(scene: list[Component], psf_scale: tuple[float, ...] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Draw a scene, PSF-convolved and pixel-integrated, as float32 [3, 75, 75] nanomaggies.

    ``psf_scale`` widens each filter's PSF (see :func:`psfs`); the default is the source PSF.
    """
    out = np.empty((len(FILTERS), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for band, psf in enumerate(psfs(psf_scale)):
        parts = [c.profile.withScaledFlux(float(c.flux[band])) for c in scene if c.flux[band] > 0]
        galaxy = galsim.Add(parts, gsparams=GSPARAMS)
        image = galsim.Convolve(galaxy, psf, gsparams=GSPARAMS).drawImage(
            nx=IMAGE_SIZE, ny=IMAGE_SIZE, scale=PIXEL_SCALE_ARCSEC, method="auto"
        )
        out[band] = image.array
    return out


def _sample_hlr(rng: np.random.Generator, scale: float = 1.0) -> float:
    hlr = HLR_MEDIAN_ARCSEC * scale * math.exp(rng.normal(0.0, HLR_LOG_SIGMA))
    return float(np.clip(hlr, *HLR_RANGE_ARCSEC))


def _blob_chain(
    rng: np.random.Generator, points: np.ndarray, width: float, f160: float, colours
) -> list[Component]:
    """Elongated Gaussians along a polyline (tail, arm or bridge) sharing ``f160`` flux."""
    weights = np.exp(-np.linspace(0.0, 1.5, len(points)))
    weights /= weights.sum()
    fluxes = filter_fluxes(rng, f160, colours)
    parts = []
    for k, (x, y) in enumerate(points):
        dx, dy = points[min(k + 1, len(points) - 1)] - points[max(k - 1, 0)]
        beta = math.atan2(dy, dx) * galsim.radians
        blob = galsim.Gaussian(sigma=width * rng.uniform(0.8, 1.2), gsparams=GSPARAMS)
        blob = blob.shear(q=rng.uniform(0.3, 0.5), beta=beta).shift(float(x), float(y))
        parts.append(Component(blob, fluxes * weights[k]))
    return parts


def _arc(centre, r0: float, r1: float, angle0: float, sweep: float, n: int) -> np.ndarray:
    """Points of a spiral arc from radius r0 to r1, starting at angle0, turning by sweep."""
    t = np.linspace(0.0, 1.0, n)
    r = r0 + (r1 - r0) * t
    a = angle0 + sweep * t
    return np.stack([centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)], axis=1)


def galaxy(
    rng: np.random.Generator,
    f160: float,
    centre: tuple[float, float],
    hlr: float,
    disturbance: float = 0.0,
    towards: float = 0.0,
) -> list[Component]:
    """One bulge + disk + clumps galaxy of total F160W flux ``f160`` (nanomaggies).

    Args:
        rng: random generator (all randomness of the galaxy).
        f160: total F160W flux, nanomaggies (tidal light, if any, is taken out of it).
        centre: position of the nucleus (the bulge centre), arcsec from the image centre;
            the disk centre is offset from it in a disturbed galaxy (lopsidedness). (v3 placed
            the disk centre there, so a merger's bulge, its brightest point, sat off centre.)
        hlr: disk half-light radius, arcsec.
        disturbance: 0 for an undisturbed galaxy; 1 for a merging one (tidal shear, offset
            bulge; tails are added by ``merger``).
        towards: position angle (radians) of the companion, direction of the tidal shear.
    """
    bt = rng.uniform(*BULGE_FRACTION_RANGE)
    clump_frac = rng.uniform(*CLUMP_FRACTION_RANGE) * (1.0 - bt)
    disk_frac = 1.0 - bt - clump_frac
    q_disk = rng.uniform(0.25, 1.0)
    theta = rng.uniform(0.0, math.pi)
    disk = galsim.Sersic(
        n=float(rng.choice(DISK_N_GRID)), half_light_radius=hlr, trunc=4.0 * hlr,
        gsparams=GSPARAMS,
    ).shear(q=q_disk, beta=theta * galsim.radians)
    bulge_hlr = hlr * rng.uniform(0.2, 0.5)
    bulge = galsim.Sersic(
        n=float(rng.choice(BULGE_N_GRID)), half_light_radius=bulge_hlr, trunc=5.0 * bulge_hlr,
        gsparams=GSPARAMS,
    ).shear(q=rng.uniform(0.6, 1.0), beta=(theta + rng.normal(0.0, 0.2)) * galsim.radians)
    offset_r = disturbance * hlr * rng.uniform(0.15, 0.5) + rng.uniform(0.0, 0.03)
    offset_a = rng.uniform(0.0, 2.0 * math.pi)
    bulge = bulge.shift(offset_r * math.cos(offset_a), offset_r * math.sin(offset_a))
    parts = [
        Component(disk, filter_fluxes(rng, f160 * disk_frac, DISK_COLOURS)),
        Component(bulge, filter_fluxes(rng, f160 * bt, BULGE_COLOURS)),
    ]
    n_clumps = int(rng.integers(0, MAX_CLUMPS + 1)) if clump_frac > 0.02 else 0
    if n_clumps:
        shares = rng.dirichlet(np.ones(n_clumps))
        for share in shares:
            r = rng.gamma(2.0, hlr / 1.678)  # exponential-disk radii
            a = rng.uniform(0.0, 2.0 * math.pi)
            x, y = r * math.cos(a), r * math.sin(a) * q_disk
            c, s = math.cos(theta), math.sin(theta)
            clump = galsim.Gaussian(sigma=rng.uniform(0.015, 0.04), gsparams=GSPARAMS)
            parts.append(
                Component(
                    clump.shift(c * x - s * y, s * x + c * y),
                    filter_fluxes(rng, f160 * clump_frac * share, CLUMP_COLOURS),
                )
            )
    g = disturbance * rng.uniform(0.05, TIDAL_SHEAR_MAX)
    # ``centre`` is the nucleus (the bulge: the galaxy's most bound, densest part, which an
    # Illustris subhalo position marks); a lopsided disk sits off it, not the other way round.
    nucleus = (offset_r * math.cos(offset_a), offset_r * math.sin(offset_a))
    return [
        Component(
            c.profile.shift(-nucleus[0], -nucleus[1])
            .shear(g=g, beta=towards * galsim.radians)
            .shift(*centre),
            c.flux,
        )
        for c in parts
    ]


def _tails(rng, f_tidal: float, centre, hlr: float, towards: float) -> list[Component]:
    """One or two tidal tails of unequal length/brightness leaving a galaxy."""
    sense = rng.choice([-1.0, 1.0])
    n_tails = int(rng.integers(1, 3))
    shares = [1.0] if n_tails == 1 else [0.65, 0.35]
    parts = []
    for k, share in enumerate(shares):
        start = towards + math.pi * k + rng.normal(0.0, 0.4)
        length = rng.uniform(0.3, 1.1) * (1.0 if k == 0 else rng.uniform(0.4, 0.8))
        points = _arc(centre, hlr, hlr + length, start, sense * rng.uniform(0.6, 1.8), 8)
        width = rng.uniform(0.04, 0.09)
        parts += _blob_chain(rng, points, width, f_tidal * share, DISK_COLOURS)
    return parts


def merger(rng: np.random.Generator) -> list[Component]:
    """A merging pair with tidal features, centred on its primary (the brighter galaxy).

    The primary has F160W flux ``f1`` (magnitude uniform in ``PRIMARY_MAG_RANGE``) and sits at
    the pointing offset, like a non-merger; the companion (``f1 / ratio``) sits ``sep`` away
    at position angle ``pa``.
    """
    f1 = mag_to_flux(rng.uniform(*PRIMARY_MAG_RANGE))
    ratio = math.exp(rng.uniform(*np.log(FLUX_RATIO_RANGE)))
    f2 = f1 / ratio
    close = rng.random() < CLOSE_FRACTION
    sep = rng.uniform(*(CLOSE_SEPARATION_RANGE if close else SEPARATION_RANGE))
    pa = rng.uniform(0.0, 2.0 * math.pi)
    jitter = rng.normal(0.0, CENTRE_JITTER_ARCSEC, size=2)
    c1 = (float(jitter[0]), float(jitter[1]))
    c2 = (c1[0] + sep * math.cos(pa), c1[1] + sep * math.sin(pa))
    hlr1 = _sample_hlr(rng)
    hlr2 = _sample_hlr(rng, ratio**-0.3)
    scene = []
    for f, c, hlr, towards in ((f1, c1, hlr1, pa), (f2, c2, hlr2, pa + math.pi)):
        tail_frac = rng.uniform(*TAIL_FRACTION_RANGE)
        scene += galaxy(rng, f * (1.0 - tail_frac), c, hlr, disturbance=1.0, towards=towards)
        scene += _tails(rng, f * tail_frac, c, hlr, towards)
    if rng.random() < BRIDGE_PROB and sep > 0.25:
        t = np.linspace(0.15, 0.85, 6)[:, None]
        normal = np.array([[-math.sin(pa), math.cos(pa)]])
        bend = rng.normal(0.0, 0.1) * np.sin(math.pi * t) * normal
        points = np.array(c1) + t * (np.array(c2) - np.array(c1)) + bend
        scene += _blob_chain(rng, points, 0.04, f2 * rng.uniform(0.02, 0.08), DISK_COLOURS)
    return scene


def nonmerger(rng: np.random.Generator) -> list[Component]:
    """A single galaxy, maybe with symmetric spiral arms and a faint unrelated neighbour."""
    mag = rng.uniform(*PRIMARY_MAG_RANGE)
    f_total = mag_to_flux(mag)
    centre = tuple(rng.normal(0.0, CENTRE_JITTER_ARCSEC, size=2))
    hlr = _sample_hlr(rng)
    arm_frac = rng.uniform(0.03, 0.12) if rng.random() < SPIRAL_ARM_PROB else 0.0
    scene = galaxy(rng, f_total * (1.0 - arm_frac), centre, hlr)
    if arm_frac:
        start = rng.uniform(0.0, 2.0 * math.pi)
        sweep = rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 3.0)
        length = rng.uniform(0.8, 1.8) * hlr
        width = rng.uniform(0.03, 0.06)
        for k in range(2):  # two-armed, point-symmetric
            points = _arc(centre, 0.5 * hlr, 0.5 * hlr + length, start + math.pi * k, sweep, 7)
            scene += _blob_chain(rng, points, width, f_total * arm_frac / 2, CLUMP_COLOURS)
    if rng.random() < NEIGHBOUR_PROB:
        d, a = rng.uniform(*NEIGHBOUR_DISTANCE_ARCSEC), rng.uniform(0.0, 2.0 * math.pi)
        f_nb = mag_to_flux(mag + rng.uniform(*NEIGHBOUR_MAG_OFFSET))
        where = (centre[0] + d * math.cos(a), centre[1] + d * math.sin(a))
        scene += galaxy(rng, f_nb, where, _sample_hlr(rng, 0.6))
    if rng.random() < MINOR_INTERACTION_PROB:
        scene += minor_interaction(rng, f_total, centre, hlr)
    return scene


def minor_interaction(
    rng: np.random.Generator, f_primary: float, centre: tuple[float, float], hlr: float
) -> list[Component]:
    """A minor companion (below the major-merger cut) and the tidal debris it raises.

    The companion (flux ``f_primary / ratio``, ratio log-uniform in
    ``MINOR_FLUX_RATIO_RANGE``) is disturbed and has its own tails; the primary gets faint
    tails holding a further ``TAIL_FRACTION_RANGE`` share of its flux, and keeps its
    undisturbed body.
    """
    ratio = math.exp(rng.uniform(*np.log(MINOR_FLUX_RATIO_RANGE)))
    f_comp = f_primary / ratio
    sep, pa = rng.uniform(*SEPARATION_RANGE), rng.uniform(0.0, 2.0 * math.pi)
    where = (centre[0] + sep * math.cos(pa), centre[1] + sep * math.sin(pa))
    hlr_comp = _sample_hlr(rng, ratio**-0.3)
    tail_comp = rng.uniform(*TAIL_FRACTION_RANGE)
    scene = galaxy(rng, f_comp * (1.0 - tail_comp), where, hlr_comp, disturbance=1.0,
                   towards=pa + math.pi)
    scene += _tails(rng, f_comp * tail_comp, where, hlr_comp, pa + math.pi)
    scene += _tails(rng, f_primary * rng.uniform(*TAIL_FRACTION_RANGE), centre, hlr, pa)
    return scene
