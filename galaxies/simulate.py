"""Simulate the embedded benchmark: source (noiseless) and target (sky noise) domain files.

A GalSim stand-in for the seed paper's data (Ciprijanovic et al. 2020: Illustris-1 galaxies at
z = 2 in ACS F814W, NIRCam F356W and WFC3 F160W, 75 x 75 pixels; "pristine" = PSF only,
"noisy" = PSF + sky noise of limiting surface brightness 25 mag/arcsec^2). The galaxy and
merger models live in ``galaxies.morphology``; this module samples, augments, splits, adds
noise and writes the files with ``galaxies.schema.write_domain``.

Conventions:

* Pixel scale 0.04 arcsec: samples the sharpest PSF (ACS F814W, FWHM 0.09") with more than
  two pixels per FWHM, and 75 pixels = 3.0 arcsec, about 25 kpc at z = 2, which holds a
  pair at up to ~9 kpc separation with its tidal tails. (The seed paper's own pixel scale is
  not reproduced.)
* Pixel values are fluxes in nanomaggies: AB zeropoint 22.5 (m = 22.5 - 2.5 log10 flux).
* Target noise: sky shot noise in the Gaussian limit of a sky-subtracted, background-limited
  image: independent zero-mean Gaussian noise, the same in every pixel and filter. Its depth
  follows the usual definition of a limiting surface brightness: SB_lim is the surface
  brightness whose flux in a 1 arcsec^2 area equals the 1-sigma noise summed over that area.
  With N = A / pixel_scale**2 independent pixels in A = 1 arcsec^2,
  ``sigma_pixel = 10**(-0.4 * (SB_lim - 22.5)) * sqrt(A) * pixel_scale`` nanomaggies
  (SB_lim = 25 gives 4.0e-3 nmgy). At this depth (the seed paper's "SB25" set) the bright
  cores of the galaxies stay visible while tidal tails, bridges and faint companions sink
  into the noise, which is what makes a classifier trained on pristine images fail. Galaxy
  shot noise is neglected. Each image row gets its own realisation.
* Target PSF (``--target-psf-scale``, default 1 = the source's PSF): a second shift, a
  survey with worse seeing than the training simulation (or a simulation made with the wrong
  PSF). The target's PSF FWHM is the source's times a factor (one for every filter, or one
  per filter in the order of ``morphology.PSF_MODELS``), the profile kept (a Moffat keeps its
  beta, an Airy its shape); the target galaxies are rendered again through the wider PSF.
  The flux is conserved, so the light spreads over more pixels: the peak surface brightness
  of compact parts (nuclei, clumps) falls by up to the factor squared, small structure
  blurs, and the sky noise stays the limiting-SB noise above, so less of each galaxy stands
  above it. The source is unchanged. With a factor of 1 nothing changes (the same pixels,
  attributes and pair id as without the option); otherwise the target file records
  ``target_psf_scale`` (per filter) and its own ``psf_fwhm_arcsec``/``psf_models``.
* Mergers: ``n_mergers`` images = ceil(n_mergers / 5) systems, each augmented x5 (identity,
  flip up-down, flip left-right, rot90, rot180; the last system may keep fewer copies).
  Copies share ``galaxy_id`` and split. Splits 70/10/20 by galaxy, per class, from the seed.
* Determinism: each galaxy and each noise row draws from its own
  ``numpy.random.SeedSequence(seed, spawn_key=(stream, index))``, so the bytes do not
  depend on ``workers``.
* Writing: one transaction (``galaxies.pairs.pair_transaction``): both files go to a
  temporary folder, are validated, and only then replace an existing pair, so a failed or
  interrupted run leaves the old pair untouched; both files carry the same ``pair_id``. A
  full disk or an unwritable ``--out`` is one line (``error: cannot write ...``), exit 1.

Usage::

    python galaxies/simulate.py --out DIR [--n-mergers 8120] [--n-nonmergers 7306] [--seed 1]
        [--workers N] [--limiting-sb 25] [--target-psf-scale 1 | S_F814W S_F356W S_F160W]
        [--independent-target]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from galaxies import morphology
from galaxies.atomic import write_error_message
from galaxies.pairs import compute_pair_id, pair_transaction, refuse_existing_pair
from galaxies.schema import FILTERS, IMAGE_SHAPE, SPLITS, DomainData, domain_paths
from galaxies.validate import InvalidDatasetError

GENERATOR = "galaxies.simulate"
GENERATOR_VERSION = 4
DEFAULT_N_MERGERS = 8120
DEFAULT_N_NONMERGERS = 7306
DEFAULT_LIMITING_SB = 25.0
NOISE_REFERENCE_AREA_ARCSEC2 = 1.0  # SB_lim = 1 sigma over this area
LIMITING_SB_RANGE = (15.0, 40.0)
DEFAULT_TARGET_PSF_SCALE = 1.0
TARGET_PSF_SCALE_RANGE = (1.0, 3.0)  # target FWHM / source FWHM: same seeing to 3x worse
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
AUGMENTATIONS = ("identity", "flipud", "fliplr", "rot90", "rot180")
# Independent random streams of one seed.
STREAM_GALAXIES, STREAM_NOISE, STREAM_TARGET_GALAXIES, STREAM_SPLIT = 0, 1, 2, 3
INDEPENDENT_ID_OFFSET = 1_000_000  # target galaxy ids when the target galaxies are new ones


def rng_for(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """The generator of one galaxy / noise row / split draw of a seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def noise_sigma(limiting_sb: float) -> float:
    """Per-pixel 1-sigma sky noise (nanomaggies) for a limiting surface brightness (AB).

    SB_lim is 1 sigma of the noise summed over ``NOISE_REFERENCE_AREA_ARCSEC2`` (see the
    module docstring): ``sigma_pixel = F_SB * sqrt(A) * pixel_scale``.
    """
    sb_flux = 10.0 ** (-0.4 * (limiting_sb - morphology.ZEROPOINT_AB))  # nmgy / arcsec^2
    return sb_flux * math.sqrt(NOISE_REFERENCE_AREA_ARCSEC2) * morphology.PIXEL_SCALE_ARCSEC


def augment(image: np.ndarray, copy: int) -> np.ndarray:
    """The ``copy``-th augmentation (see ``AUGMENTATIONS``) of a [3, H, W] image."""
    name = AUGMENTATIONS[copy]
    if name == "flipud":
        image = image[:, ::-1, :]
    elif name == "fliplr":
        image = image[:, :, ::-1]
    elif name == "rot90":
        image = np.rot90(image, 1, axes=(1, 2))
    elif name == "rot180":
        image = np.rot90(image, 2, axes=(1, 2))
    return np.ascontiguousarray(image)


def psf_scales(target_psf_scale: float | Sequence[float]) -> tuple[float, ...]:
    """One factor per filter from one factor (every filter) or one per filter.

    Raises:
        ValueError: not one or ``len(FILTERS)`` finite factors in ``TARGET_PSF_SCALE_RANGE``
            ("problem. Fix: ..."), as ``check_arguments`` reports it.
    """
    values = ([target_psf_scale] if isinstance(target_psf_scale, int | float)
              else list(target_psf_scale))
    low, high = TARGET_PSF_SCALE_RANGE
    given = " ".join(f"{value:g}" for value in values)
    if len(values) not in (1, len(FILTERS)):
        raise ValueError(
            f"--target-psf-scale got {len(values)} values ({given}), expected 1 (every filter) "
            f"or {len(FILTERS)} (one per filter: {', '.join(FILTERS)}). Fix: pass e.g. "
            "--target-psf-scale 1.5 or --target-psf-scale 1.2 1.5 1.5"
        )
    if not all(math.isfinite(value) and low <= value <= high for value in values):
        raise ValueError(
            f"--target-psf-scale {given} is not a plausible PSF widening (target FWHM / "
            f"source FWHM). Fix: give factors between {low:g} (the source's PSF) and {high:g}, "
            "e.g. 1.5"
        )
    return tuple(float(value) for value in values) * (len(FILTERS) // len(values))


def check_arguments(n_mergers: int, n_nonmergers: int, limiting_sb: float, workers,
                    target_psf_scale: float | Sequence[float] = DEFAULT_TARGET_PSF_SCALE) -> None:
    """Raise ``ValueError`` ("problem. Fix: ...") for arguments that cannot give a benchmark."""
    n_systems = math.ceil(n_mergers / len(AUGMENTATIONS)) if n_mergers > 0 else 0
    if n_mergers < 0 or n_nonmergers < 0:
        raise ValueError(
            "--n-mergers/--n-nonmergers must not be negative. Fix: pass counts >= 11 and >= 3"
        )
    if n_systems < len(SPLITS):
        raise ValueError(
            f"--n-mergers {n_mergers} gives {n_systems} merger systems, fewer than one per split "
            f"(train/val/test). Fix: use --n-mergers >= {5 * (len(SPLITS) - 1) + 1}"
        )
    if n_nonmergers < len(SPLITS):
        raise ValueError(
            f"--n-nonmergers {n_nonmergers} gives fewer than one galaxy per split "
            f"(train/val/test). Fix: use --n-nonmergers >= {len(SPLITS)}"
        )
    low, high = LIMITING_SB_RANGE
    if not (math.isfinite(limiting_sb) and low <= limiting_sb <= high):
        raise ValueError(
            f"--limiting-sb {limiting_sb} is not a plausible limiting surface brightness. "
            f"Fix: give a value in mag/arcsec^2 between {low:g} and {high:g} (e.g. 25)"
        )
    psf_scales(target_psf_scale)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers {workers} must be at least 1. Fix: pass --workers 1 or more")


def split_codes(seed: int, n_galaxies: int, class_index: int) -> np.ndarray:
    """Split code per galaxy of one class: shuffled 70/10/20 with at least one per split."""
    n_val = max(1, round(SPLIT_FRACTIONS["val"] * n_galaxies))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * n_galaxies))
    n_train = n_galaxies - n_val - n_test
    codes = np.repeat(
        np.array([SPLITS["train"], SPLITS["val"], SPLITS["test"]], dtype=np.uint8),
        [n_train, n_val, n_test],
    )
    return rng_for(seed, STREAM_SPLIT, class_index).permutation(codes)


def _render_chunk(job: tuple[int, int, int, list[int], tuple[float, ...]]) -> np.ndarray:
    """Render galaxies ``indices`` (index < n_systems: merger system, else non-merger)."""
    seed, stream, n_systems, indices, psf_scale = job
    out = np.empty((len(indices), *IMAGE_SHAPE), dtype=np.float32)
    for k, index in enumerate(indices):
        rng = rng_for(seed, stream, index)
        scene = morphology.merger(rng) if index < n_systems else morphology.nonmerger(rng)
        out[k] = morphology.render(scene, psf_scale)
    return out


class _Layout:
    """Rows of the file: merger systems (each x copies) first, then non-mergers."""

    def __init__(self, n_mergers: int, n_nonmergers: int, seed: int):
        n_aug = len(AUGMENTATIONS)
        self.n_systems = math.ceil(n_mergers / n_aug)
        self.n_galaxies = self.n_systems + n_nonmergers
        copies = [min(n_aug, n_mergers - n_aug * j) for j in range(self.n_systems)]
        self.copies = np.array(copies + [1] * n_nonmergers)
        self.row_start = np.concatenate([[0], np.cumsum(self.copies)[:-1]])
        self.n_rows = int(self.copies.sum())
        gal_split = np.concatenate(
            [split_codes(seed, self.n_systems, 1), split_codes(seed, n_nonmergers, 0)]
        )
        self.galaxy_id = np.repeat(np.arange(self.n_galaxies, dtype=np.int64), self.copies)
        self.labels = np.repeat((np.arange(self.n_galaxies) < self.n_systems).astype(np.uint8),
                                self.copies)
        self.split = np.repeat(gal_split, self.copies)


def _render_into(images, layout, seed, stream, executor, progress, desc,
                 psf_scale: tuple[float, ...] = (1.0, 1.0, 1.0)) -> None:
    """Render every galaxy of a stream and write its augmented copies into ``images``.

    ``psf_scale`` widens each filter's PSF (``morphology.psfs``); 1 = the source's PSF.
    """
    n = layout.n_galaxies
    workers = getattr(executor, "_max_workers", 1)
    size = max(1, min(64, math.ceil(n / (8 * workers))))
    jobs = [(seed, stream, layout.n_systems, list(range(i, min(i + size, n))), psf_scale)
            for i in range(0, n, size)]
    results = executor.map(_render_chunk, jobs) if executor else map(_render_chunk, jobs)
    with tqdm(total=n, desc=desc, unit="gal", disable=not progress) as bar:
        for job, chunk in zip(jobs, results, strict=True):
            for index, image in zip(job[3], chunk, strict=True):
                start = layout.row_start[index]
                for copy in range(layout.copies[index]):
                    images[start + copy] = augment(image, copy)
            bar.update(len(job[3]))


def _attrs(domain: str, seed: int, layout: _Layout, sigma: float, limiting_sb: float,
           independent_target: bool, psf_scale: tuple[float, ...] = (1.0, 1.0, 1.0)) -> dict:
    """A domain file's attributes; ``psf_scale`` is the target's PSF widening (source: 1)."""
    noisy = domain == "target"
    fwhms = morphology.psf_fwhms(psf_scale)
    noise = (
        f"sky shot noise (Gaussian, zero mean, sky-subtracted): SB_lim = {limiting_sb:g} "
        f"mag/arcsec^2 (AB) at 1 sigma over {NOISE_REFERENCE_AREA_ARCSEC2:g} arcsec^2, "
        f"sigma = {sigma:.6g} nanomaggies per pixel in every filter; galaxy shot noise neglected"
        if noisy else "none"
    )
    attrs = {
        "domain": domain,
        "filters": list(FILTERS),
        "pixel_scale_arcsec": morphology.PIXEL_SCALE_ARCSEC,
        "psf_fwhm_arcsec": fwhms,
        "psf_models": [f"{kind} fwhm={fwhm}\"" + (f" beta={beta}" if beta else "")
                       for (kind, _, beta), fwhm in zip(morphology.PSF_MODELS, fwhms,
                                                        strict=True)],
        "noise": noise,
        "noise_sigma": [sigma if noisy else 0.0] * len(FILTERS),
        "noise_convention": "sigma_pixel = 10**(-0.4*(SB_lim - zeropoint)) * sqrt(area) "
        "* pixel_scale, area = 1 arcsec^2",
        "pixel_unit": "nanomaggies",
        "zeropoint": morphology.ZEROPOINT_AB,
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "independent_target": bool(independent_target),
        "n_mergers": int(layout.labels.sum()),
        "n_nonmergers": int((layout.labels == 0).sum()),
        "n_merger_systems": layout.n_systems,
        "augmentation": "mergers x5: " + ", ".join(AUGMENTATIONS),
        "split_fractions": dict(SPLIT_FRACTIONS),
    }
    if noisy:
        attrs["limiting_sb_mag_arcsec2"] = float(limiting_sb)
    if any(factor != 1.0 for factor in psf_scale):  # absent at 1: files as before the option
        attrs["target_psf_scale"] = list(psf_scale)
    return attrs


def simulate(
    out_dir: str | os.PathLike,
    n_mergers: int = DEFAULT_N_MERGERS,
    n_nonmergers: int = DEFAULT_N_NONMERGERS,
    seed: int = 1,
    workers: int | None = None,
    limiting_sb: float = DEFAULT_LIMITING_SB,
    independent_target: bool = False,
    progress: bool = True,
    target_psf_scale: float | Sequence[float] = DEFAULT_TARGET_PSF_SCALE,
) -> dict[str, Path]:
    """Simulate and write ``out_dir/source.h5`` and ``out_dir/target.h5``.

    Args:
        out_dir: folder for the two files (created if needed).
        n_mergers: merger images (systems x 5 augmentations).
        n_nonmergers: non-merger images (one per galaxy).
        seed: seed of everything (galaxies, splits, noise).
        workers: processes; ``None`` = ``os.cpu_count()``.
        limiting_sb: SB_lim of the target noise, mag/arcsec^2 (AB), 1 sigma over 1 arcsec^2.
        independent_target: draw the target galaxies from another random stream (new ids)
            instead of reusing the source galaxies.
        progress: show tqdm progress bars.
        target_psf_scale: target PSF FWHM / source PSF FWHM, one factor for every filter or
            one per filter (``morphology.PSF_MODELS`` order), in ``TARGET_PSF_SCALE_RANGE``;
            1 = the source's PSF.

    Returns:
        ``{"source": path, "target": path}``.

    Raises:
        ValueError: for arguments that cannot give a benchmark (see ``check_arguments``).
        OSError: ``out_dir`` cannot be written (disk full, permissions); an existing pair
            there is left as it was (see ``galaxies.pairs``).
    """
    check_arguments(n_mergers, n_nonmergers, limiting_sb, workers, target_psf_scale)
    workers = workers or os.cpu_count() or 1
    layout = _Layout(n_mergers, n_nonmergers, seed)
    sigma = noise_sigma(limiting_sb)
    target_psf = psf_scales(target_psf_scale)
    source_psf = (1.0,) * len(FILTERS)
    target_ids = layout.galaxy_id + (INDEPENDENT_ID_OFFSET if independent_target else 0)
    attrs = {"source": _attrs("source", seed, layout, 0.0, limiting_sb, independent_target),
             "target": _attrs("target", seed, layout, sigma, limiting_sb, independent_target,
                              target_psf)}
    images = np.empty((layout.n_rows, *IMAGE_SHAPE), dtype=np.float32)
    domains = {
        "source": DomainData(images, layout.labels, layout.galaxy_id, layout.split,
                             attrs["source"]),
        "target": DomainData(images, layout.labels, target_ids, layout.split, attrs["target"]),
    }
    with pair_transaction(out_dir, compute_pair_id(domains)) as pair:
        executor = None
        if workers > 1:
            executor = ProcessPoolExecutor(workers,
                                           mp_context=multiprocessing.get_context("fork"))
        try:
            _render_into(images, layout, seed, STREAM_GALAXIES, executor, progress, "source",
                         source_psf)
            pair.write("source", domains["source"])
            if independent_target or target_psf != source_psf:
                stream = STREAM_TARGET_GALAXIES if independent_target else STREAM_GALAXIES
                _render_into(images, layout, seed, stream, executor, progress, "target",
                             target_psf)
        finally:
            if executor is not None:
                executor.shutdown()
        for row in tqdm(range(layout.n_rows), desc="noise", unit="img", disable=not progress,
                        mininterval=1.0):
            noise = rng_for(seed, STREAM_NOISE, row).normal(0.0, sigma, size=IMAGE_SHAPE)
            images[row] += noise.astype(np.float32)
        pair.write("target", domains["target"])
        del images, domains
    return domain_paths(out_dir)


def _writable(path: Path) -> bool:
    """Whether ``path`` is (or can be created as) a writable folder."""
    for parent in (path, *path.parents):
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for source.h5/target.h5")
    parser.add_argument("--n-mergers", type=int, default=DEFAULT_N_MERGERS,
                        help="merger images (systems x5 augmentations), default %(default)s")
    parser.add_argument("--n-nonmergers", type=int, default=DEFAULT_N_NONMERGERS,
                        help="non-merger images, default %(default)s")
    parser.add_argument("--seed", type=int, default=1, help="default %(default)s")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--limiting-sb", type=float, default=DEFAULT_LIMITING_SB,
                        help="target SB_lim in mag/arcsec^2, 1 sigma over 1 arcsec^2 (default 25)")
    parser.add_argument("--target-psf-scale", type=float, nargs="+",
                        default=[DEFAULT_TARGET_PSF_SCALE], metavar="S",
                        help="target PSF FWHM / source PSF FWHM: one factor for every filter or "
                        "one per filter (F814W F356W F160W), 1-3 (default 1: the same PSF)")
    parser.add_argument("--independent-target", action="store_true",
                        help="target galaxies drawn independently of the source ones")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--force", action="store_true",
                        help="replace a pair that --out already holds")
    args = parser.parse_args(argv)
    try:
        check_arguments(args.n_mergers, args.n_nonmergers, args.limiting_sb, args.workers,
                        args.target_psf_scale)
    except ValueError as error:
        parser.error(str(error))
    refusal = refuse_existing_pair(args.out, args.force)
    if refusal:
        parser.exit(2, f"error: {refusal}\n")
    if not _writable(args.out):
        parser.error(f"--out {args.out} is not a writable folder. Fix: choose a folder you can "
                     "write to (it is created if missing)")
    try:
        paths = simulate(args.out, args.n_mergers, args.n_nonmergers, args.seed, args.workers,
                         args.limiting_sb, args.independent_target, progress=not args.quiet,
                         target_psf_scale=args.target_psf_scale)
    except (OSError, InvalidDatasetError) as error:
        message = write_error_message(error, args.out)
        if message is None and not isinstance(error, InvalidDatasetError):
            raise
        print(f"error: {message or error}", file=sys.stderr)
        return 1
    for domain, path in paths.items():
        print(f"{domain}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
