r"""How often the OOD flag fires on held-out target images and on real Hubble pixels.

Usage::

    python apply/fit_ood.py --trial runs/quick
    python benchmarks/ood_check.py --trial runs/quick [--data DIR] [--n-stamps 100] \
        [--stamps-out hubble.npy] [--json OUT.json]

For a trial with an ``ood_reference.npz`` (:mod:`apply.ood`) it prints the fraction of
``ood_flag`` on

1. the **target test** split of the trial's data (never read by the fit: the rate should be
   ``alpha`` within the binomial spread of the validation and test sizes);
2. ``--n-stamps`` cut-outs of a real Hubble image: scikit-image's ``hubble_deep_field()``
   (the Hubble eXtreme Deep Field colour composite, 872 x 1000 x 3 uint8 JPEG, NASA/ESA,
   public domain), which is shipped inside the scikit-image wheel, so nothing is downloaded.
   The stamps are taken in two units: ``noise-matched`` (per channel, sky median subtracted
   and scaled so that the sky's robust sigma equals the target's ``noise_sigma``: real
   galaxies at the target's noise level) and ``raw`` (the 8-bit values as float32).

``--stamps-out FILE.npy`` also writes the noise-matched stamps in the ``[N, 3, 75, 75]``
layout ``apply/predict.py --images`` reads. Exit status 0; 2 for an unusable trial, data or
reference (one line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

STAMP = 75
HALF = STAMP // 2


def hubble_image() -> np.ndarray:
    """The Hubble Deep Field composite [872, 1000, 3] uint8 from the scikit-image wheel.

    Raises:
        FileNotFoundError: scikit-image would have to download it (not in this installation).
    """
    import skimage.data

    shipped = Path(skimage.data.__file__).parent / "hubble_deep_field.jpg"
    if not shipped.is_file():
        raise FileNotFoundError(f"{shipped} is not shipped with this scikit-image")
    return skimage.data.hubble_deep_field()


def hubble_stamps(n: int = 100, noise_sigma: float | tuple[float, ...] | None = None,
                  min_distance: int = 10, smooth: float = 2.0) -> np.ndarray:
    """``n`` 75 x 75 stamps around the brightest sources of the Hubble Deep Field image.

    Sources are the local maxima of the Gaussian-smoothed (``smooth`` pixels) grey image
    (``skimage.feature.peak_local_max``, at least ``min_distance`` pixels apart, brightest
    first), kept only where the whole stamp lies inside the image. Channels are ordered
    blue, green, red, to follow the wavelength order of the training filters (F814W, F356W,
    F160W); the composite's bands and pixel scale are not those of the training data.

    Args:
        n: number of stamps (fewer if the image has fewer sources).
        noise_sigma: ``None``: the 8-bit values as float32; else per channel the sky median
            is subtracted and the pixels scaled so that the sky's robust sigma (1.4826 x the
            median absolute deviation of the whole image) equals ``noise_sigma`` (a number
            or one per channel; the target's ``noise_sigma`` attribute).
        min_distance: smallest distance between two sources, pixels.
        smooth: sigma of the Gaussian smoothing before the peak search, pixels.

    Returns:
        float32 [n, 3, 75, 75].
    """
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian

    image = hubble_image().astype(np.float32)[:, :, ::-1]  # B, G, R: short to long wavelength
    if noise_sigma is not None:
        sky = np.median(image, axis=(0, 1))
        sigma = 1.4826 * np.median(np.abs(image - sky), axis=(0, 1))
        image = (image - sky) / sigma * np.broadcast_to(np.asarray(noise_sigma, np.float32), 3)
    grey = gaussian(image.mean(axis=2), sigma=smooth)
    peaks = peak_local_max(grey, min_distance=min_distance, exclude_border=HALF + 1,
                           num_peaks=n)
    stamps = [image[y - HALF : y + HALF + 1, x - HALF : x + HALF + 1] for y, x in peaks]
    return np.ascontiguousarray(np.stack(stamps).transpose(0, 3, 1, 2), dtype=np.float32)


def flag_rate(model: Any, ref: Any, images: np.ndarray) -> dict[str, Any]:
    """The fraction of ``images`` whose ``ood_flag`` is set, and the set's feature shift.

    One model and its reference; the feature shift is the set-level test against the target
    validation images (``apply.shift.feature_shift``: median distance ratio, P(farther),
    Mann-Whitney p).
    """
    from apply.ood import ensemble_score
    from apply.shift import feature_shift

    distances = ref.distance(model.penultimate(images))
    score, threshold = ensemble_score([ref], [distances])
    return {"flagged": float(np.mean(score > threshold)),
            "feature_shift": feature_shift(distances, ref.calibration_scores)}


def check(trial: str | Path, data_dir: str | Path | None = None, n_stamps: int = 100
          ) -> dict[str, Any]:
    """Flag rates on the target test split and the Hubble stamps (module docstring).

    Raises:
        ValueError: the trial has no reference (:class:`apply.ood.OodReferenceError` and
            :class:`apply.inference.ModelLoadError` are ``ValueError`` too).
    """
    from apply.inference import load_trained
    from apply.ood import FIT_COMMAND, read_reference
    from galaxies.datasets import load_benchmark
    from training.record import portable_path, resolve_path

    model = load_trained(trial)
    ref = read_reference(trial)
    if ref is None:
        raise ValueError(f"{trial} has no OOD reference. Fix: {FIT_COMMAND} {trial}")
    data_text = str(data_dir) if data_dir else model.record["data"]["dir"]
    data_dir = resolve_path(data_text)
    target = load_benchmark(data_dir).target
    sigma = target.attrs.get("noise_sigma")
    sigma = None if sigma is None else np.ravel(sigma).astype(float).tolist()
    test = target.subset("test").images  # evaluation only: the fit never read it
    matched = hubble_stamps(n_stamps, noise_sigma=sigma)
    raw = hubble_stamps(n_stamps)
    config = model.record.get("config", {})
    import torch

    from training.compute_path import machine

    return {"trial": portable_path(Path(trial)), "problem": model.problem,
            "machine": machine(torch.device("cpu")),
            "trial_machine": model.record.get("machine"),
            "trial_compute_path": model.record.get("compute_path"),
            "trial_config": {key: config.get(key) for key in ("epochs", "seed", "batch_size")},
            "data": data_text, "alpha": ref.alpha,
            "n_validation": len(ref.calibration_scores),
            "target_test": {"n": len(test), **flag_rate(model, ref, test)},
            "hubble_noise_matched": {"n": len(matched), "noise_sigma": sigma,
                                     **flag_rate(model, ref, matched)},
            "hubble_raw": {"n": len(raw), **flag_rate(model, ref, raw)}}


def main(argv: list[str] | None = None) -> int:
    """Print the flag rates; optionally write the stamps and a JSON."""
    parser = argparse.ArgumentParser(prog="benchmarks/ood_check.py", description=__doc__
                                     .splitlines()[0])
    parser.add_argument("--trial", required=True)
    parser.add_argument("--data", default=None)
    parser.add_argument("--n-stamps", type=int, default=100)
    parser.add_argument("--stamps-out", default=None, help="write the noise-matched stamps")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from training.denormals import flush_denormals

    flush_denormals()  # before torch's thread pool exists: every thread flushes
    try:
        result = check(args.trial, args.data, args.n_stamps)
    except (ValueError, FileNotFoundError) as exc:  # trial, reference, data; the Hubble file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"alpha {result['alpha']:g} ({result['n_validation']} validation images)")
    for key in ("target_test", "hubble_noise_matched", "hubble_raw"):
        part = result[key]
        shift = part["feature_shift"]
        print(f"{key}: {100 * part['flagged']:.1f} % of {part['n']} flagged; feature distance "
              f"median x{shift['median_ratio']:.2f} the validation images', P(farther) "
              f"{shift['auc']:.2f}, Mann-Whitney p {shift['p_value']:.2g}")
    if args.stamps_out:
        np.save(args.stamps_out, hubble_stamps(args.n_stamps,
                                               result["hubble_noise_matched"]["noise_sigma"]))
    if args.json:
        result["command"] = ["python", "benchmarks/ood_check.py", *(argv or sys.argv[1:])]
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
