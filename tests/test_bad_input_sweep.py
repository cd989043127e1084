"""Issue 24: a sweep of bad inputs over predict, calibrate, fit_ood, import, train, search,
seeds and report.

Each case runs the real command line in its own folder and must end with a non-zero exit, an
``error:`` line naming the problem (one line; argparse's usage line may precede its own), no
Python traceback, and every file of the case folder and of the shared trial byte-identical
(nothing written, nothing lost). The cases are the findings' inputs and others of their kind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from galaxies.schema import domain_paths, load_domain_arrays
from training.checkpoint import CHECKPOINT

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.fixture(scope="module")
def trial(tiny_trial) -> Path:
    return tiny_trial


def _images(tiny_domain_pair: Path) -> np.ndarray:
    return load_domain_arrays(domain_paths(tiny_domain_pair)["target"]).images[:6]


def _npy(folder: Path, array) -> Path:
    np.save(folder / "x.npy", array)
    return folder / "x.npy"


def _copy_trial(trial: Path, folder: Path, edit: Callable[[Path], None]) -> Path:
    copy = folder / "trial"
    shutil.copytree(trial, copy)
    edit(copy)
    return copy


def _stale_ood(trial: Path) -> None:
    """A valid ``ood_reference.npz`` that names another checkpoint."""
    from apply.ood import OodReference, write_reference

    reference = OodReference(mean=np.zeros(2), precision=np.eye(2), threshold=1.0, alpha=0.05,
                             calibration_scores=np.ones(3), calibration_key="",
                             checkpoint_sha256="0" * 64, shrinkage=0.0, n_reference=5)
    write_reference(trial, reference)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _pair_with_target_scale(data: Path, folder: Path, scale: float) -> Path:
    out = folder / "data"
    shutil.copytree(data, out)
    with h5py.File(domain_paths(out)["target"], "r+") as h5:
        h5.attrs["pixel_scale_arcsec"] = scale
    return out


def _fits_truncated(folder: Path, images: np.ndarray) -> Path:
    from astropy.io import fits

    path = folder / "t.fits"
    fits.HDUList([fits.PrimaryHDU(images), fits.ImageHDU(np.zeros(len(images)))]).writeto(path)
    _truncate(path)
    return path


def _labels(folder: Path, n: int) -> Path:
    np.save(folder / "y.npy", np.arange(n) % 2)
    return folder / "y.npy"


def _foreign(folder: Path) -> Path:
    """A folder holding a file no command of the project wrote."""
    (folder / "mine").mkdir()
    (folder / "mine" / "notes.txt").write_text("precious\n")
    return folder / "mine"


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.npy")
    return folder / "pipe.npy"


# name -> (build argv from (folder, trial, data, images), words the error line must hold)
CASES: dict[str, tuple[Callable[..., list], str]] = {
    "predict: zero-byte .npy": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", t, "--images",
                             (f / "e.npy").touch() or f / "e.npy", "--out", f / "cat"], "e.npy"),
    "predict: 1e30 pixels": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", t, "--images",
                             _npy(f, np.full_like(im, 1e30)), "--out", f / "cat"], "pixel"),
    "predict: NaN pixels": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", t, "--images",
                             _npy(f, np.where(np.ones_like(im, bool), np.nan, im)),
                             "--out", f / "cat"], "NaN"),
    "predict: 64x64 cut-outs": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", t, "--images",
                             _npy(f, im[:, :, :64, :64]), "--out", f / "cat"], "75"),
    "predict: missing images": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", t, "--images", f / "none.npy",
                             "--out", f / "cat"], "does not exist"),
    "predict: a FIFO as images": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", t, "--images", _fifo(f),
                             "--out", f / "cat"], "not a regular file"),
    "predict: missing trial": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", f / "nothing", "--images",
                             _npy(f, im), "--out", f / "cat"], "nothing"),
    "predict: truncated checkpoint": (
        lambda f, t, d, im: ["apply/predict.py", "--trial",
                             _copy_trial(t, f, lambda c: _truncate(c / CHECKPOINT)),
                             "--images", _npy(f, im), "--out", f / "cat"], "checkpoint"),
    "predict: calibration without temperature": (
        lambda f, t, d, im: ["apply/predict.py", "--trial",
                             _copy_trial(t, f, lambda c: (c / "calibration.json").write_text(
                                 "{}")), "--images", _npy(f, im), "--out", f / "cat",
                             "--calibrated"], "temperature"),
    "predict: --out is a file": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", t, "--images", _npy(f, im),
                             "--out", _npy(f, im)], "x.npy"),
    "predict: OOD reference of another checkpoint": (
        lambda f, t, d, im: ["apply/predict.py", "--trial", _copy_trial(t, f, _stale_ood),
                             "--images", _npy(f, im), "--out", f / "cat"], "fit_ood.py"),
    "predict: unreadable OOD reference": (
        lambda f, t, d, im: ["apply/predict.py", "--trial",
                             _copy_trial(t, f, lambda c: (c / "ood_reference.npz").write_bytes(
                                 b"junk")), "--images", _npy(f, im), "--out", f / "cat"],
        "not a readable OOD reference"),
    "fit_ood: --alpha 1.5": (
        lambda f, t, d, im: ["apply/fit_ood.py", "--trial", t, "--alpha", "1.5"], "alpha"),
    "fit_ood: missing trial": (
        lambda f, t, d, im: ["apply/fit_ood.py", "--trial", f / "nothing"], "nothing"),
    "calibrate: --device bogus": (
        lambda f, t, d, im: ["apply/calibrate.py", "--trial", t, "--device", "bogus"],
        "bogus"),
    "calibrate: missing trial": (
        lambda f, t, d, im: ["apply/calibrate.py", "--trial", f / "nothing"], "nothing"),
    "calibrate: --summary x.md": (
        lambda f, t, d, im: ["apply/calibrate.py", "--trial", t, "--summary", f / "x.md"],
        ".json"),
    "import: zero-byte .npy": (
        lambda f, t, d, im: ["galaxies/import_real.py", "--source-images",
                             (f / "e.npy").touch() or f / "e.npy", "--source-labels",
                             _labels(f, 6), "--target-images", _npy(f, im), "--target-labels",
                             f / "y.npy", "--out", f / "out"], "e.npy"),
    "import: empty arrays": (
        lambda f, t, d, im: ["galaxies/import_real.py", "--source-images", _npy(f, im[:0]),
                             "--source-labels", _labels(f, 0), "--target-images",
                             f / "x.npy", "--target-labels", f / "y.npy", "--out", f / "out"],
        "x.npy"),
    "import: truncated FITS": (
        lambda f, t, d, im: ["galaxies/import_real.py", "--source-fits", _fits_truncated(f, im),
                             "--target-fits", f / "t.fits", "--out", f / "out"], "t.fits"),
    "import: --seed -1": (
        lambda f, t, d, im: ["galaxies/import_real.py", "--source-images", _npy(f, im),
                             "--source-labels", _labels(f, 6), "--target-images", f / "x.npy",
                             "--target-labels", f / "y.npy", "--out", f / "out", "--seed", "-1"],
        "--seed"),
    "import: pixel scale 0": (
        lambda f, t, d, im: ["galaxies/import_real.py", "--source-images", _npy(f, im),
                             "--source-labels", _labels(f, 6), "--target-images", f / "x.npy",
                             "--target-labels", f / "y.npy", "--out", f / "out",
                             "--pixel-scale-arcsec", "0"], "pixel-scale"),
    "import: PSF inf": (
        lambda f, t, d, im: ["galaxies/import_real.py", "--source-images", _npy(f, im),
                             "--source-labels", _labels(f, 6), "--target-images", f / "x.npy",
                             "--target-labels", f / "y.npy", "--out", f / "out",
                             "--psf-fwhm-arcsec", "inf"], "psf-fwhm"),
    "train: --threads -1": (
        lambda f, t, d, im: ["training/train.py", "--problem", "none_deepmerge", "--data", d,
                             "--out", f / "t", "--threads", "-1"], "--threads"),
    "train: lr=inf": (
        lambda f, t, d, im: ["training/train.py", "--problem", "none_deepmerge", "--data", d,
                             "--out", f / "t", "--set", "lr=inf"], "lr"),
    "train: lambda_tl=inf": (
        lambda f, t, d, im: ["training/train.py", "--problem", "mmd_deepmerge", "--data", d,
                             "--out", f / "t", "--set", "lambda_tl=inf"], "lambda_tl"),
    "train: --from-trial with a truncated checkpoint": (
        lambda f, t, d, im: ["training/train.py", "--problem", "adabn_deepmerge", "--data", d,
                             "--out", f / "t", "--set", "epochs=1", "--set", "batch_size=8",
                             "--set", "max_batches_per_epoch=2", "--from-trial",
                             _copy_trial(t, f, lambda c: _truncate(c / CHECKPOINT))],
        "checkpoint"),
    "train: missing data": (
        lambda f, t, d, im: ["training/train.py", "--problem", "none_deepmerge", "--data",
                             f / "nodata", "--out", f / "t"], "nodata"),
    "train: unknown problem": (
        lambda f, t, d, im: ["training/train.py", "--problem", "nope_deepmerge", "--data", d,
                             "--out", f / "t"], "nope"),
    "train: pixel scales that differ": (
        lambda f, t, d, im: ["training/train.py", "--problem", "none_deepmerge", "--data",
                             _pair_with_target_scale(d, f, 0.04), "--out", f / "t"],
        "pixel scale"),
    "search: --seed -1": (
        lambda f, t, d, im: ["search/run.py", "--problem", "none_deepmerge", "--data", d,
                             "--log-dir", f / "s", "--seed", "-1"], "--seed"),
    "search: --log-dir is a file": (
        lambda f, t, d, im: ["search/run.py", "--problem", "none_deepmerge", "--data", d,
                             "--log-dir", _npy(f, im)], "x.npy"),
    "search: --cpus-per-trial nan": (
        lambda f, t, d, im: ["search/run.py", "--problem", "none_deepmerge", "--data", d,
                             "--log-dir", f / "s", "--cpus-per-trial", "nan"], "cpus-per-trial"),
    "search: pixel scales that differ": (
        lambda f, t, d, im: ["search/run.py", "--problem", "none_deepmerge", "--data",
                             _pair_with_target_scale(d, f, 0.04), "--log-dir", f / "s",
                             "--max-evals", "1"], "pixel scale"),
    "seeds: --out holds other files": (
        lambda f, t, d, im: ["search/seeds.py", "--problem", "none_deepmerge", "--seeds", "1",
                             "--data", d, "--set", "epochs=1", "--out", _foreign(f)],
        "not a seed study"),
    "report: --out holds other files": (
        lambda f, t, d, im: ["analysis/report.py", "--runs", t, "--out", _foreign(f)],
        "not a report"),
}


def _snapshot(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif not path.is_dir():
                out[str(path)] = "special"
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_changes_nothing(name, trial, tiny_domain_pair, tmp_path):
    build, words = CASES[name]
    argv = [str(a) for a in build(tmp_path, trial, tiny_domain_pair, _images(tiny_domain_pair))]
    before = _snapshot(tmp_path, trial)
    run = subprocess.run([PY, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode not in (0, None) and run.returncode > 0, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, run.stderr
    usage = [line for line in lines if line.startswith(("usage:", " "))]
    assert len(lines) == 1 + len(usage) and lines[-1] == errors[0], run.stderr
    assert words in errors[0], errors[0]
    assert _snapshot(tmp_path, trial) == before  # nothing written, nothing lost
