r"""Out-of-distribution score: how far an object's features lie from the target training set.

The formulas; ``apply/fit_ood.py`` fits a trial's reference and ``apply/predict.py`` applies it.

**Features.** ``z(x)`` is the penultimate layer of the trial's *target* network (the input of
its last ``Linear``, :meth:`models.Classifier.penultimate`; DeepMerge: 32 values, ResNet18:
the 256-wide bottleneck), on images normalised with the target channel statistics, exactly as
``predict.py`` scores them. It is the layer the merger decision reads, and it is small: the
2592 DeepMerge transfer features would need a 2592 x 2592 precision matrix (54 MB in float64,
about 40 s of Ledoit-Wolf on one core for 600 images) for every trial.

**Reference** (fitted once per trial on the *target training* split, ``z_1 ... z_n``): the mean
``mu`` and the Ledoit-Wolf covariance (Ledoit & Wolf 2004, ``sklearn.covariance.LedoitWolf``)

.. math::

    \Sigma = (1 - \delta) S + \delta \frac{\operatorname{tr} S}{D} I,

``S`` the sample covariance and ``delta`` the shrinkage that minimises the expected Frobenius
error. The shrinkage keeps ``Sigma`` invertible when ReLU units never fire on the target
(zero variance) or when there are fewer images than features.

**Score**: the Mahalanobis distance (Lee et al. 2018, "A simple unified framework for
detecting out-of-distribution samples and adversarial attacks", on the penultimate layer)

.. math::

    d(x) = \sqrt{(z(x) - \mu)^\top \Sigma^{-1} (z(x) - \mu)}.

Lee et al. use one mean per class with a shared covariance; target labels are never read
here, so there is one Gaussian around all target training features. A Gaussian needs
``D + D^2`` stored numbers whatever the size of the training split, where the mean distance to
the k nearest neighbours (Sun et al. 2022) would store every reference vector and search them
for each object; with ``D`` = 32 the Gaussian is also well estimated from a few hundred images.

**Threshold** (calibrated on the *target validation* split, scores ``v_1 <= ... <= v_m``): the
split-conformal (1 - alpha) quantile ``t = v_(k)``, ``k = ceil((m + 1)(1 - alpha))`` (at most
``m``; Vovk et al. 2005, Angelopoulos & Bates 2021). For a new image drawn like the validation
images, ``P(d > t) = (m + 1 - k) / (m + 1)``, between ``alpha - 1/(m + 1)`` and ``alpha``:
the flag fires on about ``alpha`` (default 5 %) of ordinary target images by design. With
``m < 1/alpha - 1`` validation images ``k`` is capped at ``m`` and the rate is ``1/(m + 1)``.
No test image and no label enters the fit.

**Ensembles**: each member's distance is divided by its own threshold, ``r_i = d_i / t_i``;
the ensemble's ``ood_score`` is the mean of the ``r_i`` and its threshold the same conformal
quantile of the mean of the members' stored validation ratios ``v_i / t_i`` (row by row: the
members must have been calibrated on the same validation images with the same alpha). For one
model ``ood_score = d / t`` and the threshold is exactly 1; ``ood_flag = ood_score >
threshold``.

**What the flag says**: the network's features of this object lie farther from those of the
target training images than all but ``alpha`` of the target validation images do. **What it
does not say**: that the object is not a galaxy or not a merger, or that an unflagged
``p_merger`` is right (target accuracies are far from perfect, benchmarks/RESULTS.md); an
object can also differ from the training images in ways the features ignore.

The file ``<trial>/ood_reference.npz`` (``numpy.load(..., allow_pickle=False)``: numbers and
strings only) holds the reference and ``checkpoint_sha256``, the SHA-256 of the
``checkpoint.pt`` it was fitted for; any other checkpoint is refused, as for
``calibration.json``.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.checkpoint import CHECKPOINT, checkpoint_sha256
from training.record import OOD_REFERENCE_FILE, write_npz

DEFAULT_ALPHA = 0.05
FORMAT = 1
LAYER = "penultimate"
FIT_COMMAND = "python apply/fit_ood.py --trial"


class OodReferenceError(ValueError):
    """An unusable ``ood_reference.npz`` or fit; ``str()`` is one line naming the fix."""


@dataclass(frozen=True)
class OodReference:
    """A fitted reference: the Gaussian of the target training features and its threshold.

    Attributes:
        mean: ``mu`` [D].
        precision: ``Sigma^-1`` [D, D] (Ledoit-Wolf).
        threshold: ``t``, the conformal (1 - alpha) quantile of ``calibration_scores``.
        alpha: the calibrated rate of flags on target validation images.
        calibration_scores: ``d`` of every target validation image, in file order.
        calibration_key: SHA-256 of those validation images (float32 bytes).
        checkpoint_sha256: SHA-256 of the ``checkpoint.pt`` the features came from.
        shrinkage: the Ledoit-Wolf ``delta``.
        n_reference: target training images in the fit.
    """

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    alpha: float
    calibration_scores: np.ndarray
    calibration_key: str
    checkpoint_sha256: str
    shrinkage: float
    n_reference: int

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distances ``d`` [N] of ``features`` [N, D] (inf where not finite)."""
        return mahalanobis(features, self.mean, self.precision)


def mahalanobis(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``sqrt((z - mu)^T P (z - mu))`` per row, float64; a non-finite result becomes ``inf``."""
    diff = np.asarray(features, dtype=np.float64) - mean
    with np.errstate(over="ignore", invalid="ignore"):
        squared = np.einsum("ij,ij->i", diff @ precision, diff)
    return np.where(np.isfinite(squared), np.sqrt(np.maximum(squared, 0.0)), np.inf)


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """``v_(k)``, ``k = min(m, ceil((m + 1)(1 - alpha)))``, of ``m`` scores (module docstring)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    m = len(ordered)
    k = min(m, math.ceil((m + 1) * (1.0 - alpha) - 1e-12))  # no float fuzz above an integer
    return float(ordered[k - 1])


def images_key(images: np.ndarray) -> str:
    """SHA-256 of images as C-ordered float32 bytes (which validation images calibrated)."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.float32).tobytes()).hexdigest()


def check_alpha(alpha: float) -> float:
    """``alpha`` in (0, 1), else :class:`OodReferenceError`."""
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise OodReferenceError(f"alpha must be in (0, 1), got {alpha}")
    return float(alpha)


def fit_reference(reference: np.ndarray, calibration: np.ndarray, alpha: float = DEFAULT_ALPHA,
                  checkpoint_sha256: str = "", calibration_key: str = "") -> OodReference:
    """Fit ``mu``, the Ledoit-Wolf precision and the threshold (module docstring).

    Args:
        reference: features [n, D] of the target training images.
        calibration: features [m, D] of the target validation images.
        alpha: the rate of flags to calibrate, in (0, 1).
        checkpoint_sha256: SHA-256 of the checkpoint the features came from.
        calibration_key: :func:`images_key` of the validation images.

    Raises:
        OodReferenceError: fewer than 2 reference or 1 validation rows, non-finite features,
            mismatched widths, or ``alpha`` outside (0, 1).
    """
    from sklearn.covariance import LedoitWolf

    alpha = check_alpha(alpha)
    reference = np.asarray(reference, dtype=np.float64)
    calibration = np.asarray(calibration, dtype=np.float64)
    if reference.ndim != 2 or len(reference) < 2 or calibration.ndim != 2 or not len(calibration):
        raise OodReferenceError(f"need >= 2 target training and >= 1 target validation images, "
                                f"got {len(reference)} and {len(calibration)}")
    if reference.shape[1] != calibration.shape[1]:
        raise OodReferenceError(f"feature widths differ: {reference.shape[1]} and "
                                f"{calibration.shape[1]}")
    if not (np.isfinite(reference).all() and np.isfinite(calibration).all()):
        raise OodReferenceError("the network's features are not finite on the target images")
    fitted = LedoitWolf().fit(reference)
    mean, precision = fitted.location_, (fitted.precision_ + fitted.precision_.T) / 2
    scores = mahalanobis(calibration, mean, precision)
    return OodReference(mean, precision, conformal_threshold(scores, alpha), alpha, scores,
                        calibration_key, checkpoint_sha256, float(fitted.shrinkage_),
                        len(reference))


def write_reference(trial_dir: str | os.PathLike, ref: OodReference, **provenance: str) -> Path:
    """Write ``<trial_dir>/ood_reference.npz`` atomically (plus string ``provenance``)."""
    arrays = {"format": np.int64(FORMAT), "layer": np.str_(LAYER), "mean": ref.mean,
              "precision": ref.precision, "threshold": np.float64(ref.threshold),
              "alpha": np.float64(ref.alpha), "calibration_scores": ref.calibration_scores,
              "calibration_key": np.str_(ref.calibration_key),
              "checkpoint_sha256": np.str_(ref.checkpoint_sha256),
              "shrinkage": np.float64(ref.shrinkage), "n_reference": np.int64(ref.n_reference),
              "fitted_on": np.str_("target_train"), "calibrated_on": np.str_("target_val")}
    arrays.update({key: np.str_(value) for key, value in provenance.items()})
    return write_npz(Path(trial_dir) / OOD_REFERENCE_FILE, arrays)


def read_reference(trial_dir: str | os.PathLike) -> OodReference | None:
    """``<trial_dir>/ood_reference.npz``, checked; ``None`` when there is no such file.

    Raises:
        OodReferenceError: the file is unreadable (or needs pickle), misses a key, holds
            shapes that do not fit, non-finite numbers, a threshold that is not > 0, an alpha
            outside (0, 1), or was fitted for another ``checkpoint.pt``.
    """
    path = Path(trial_dir) / OOD_REFERENCE_FILE
    if not path.exists():
        return None
    fix = f"Fix: rerun {FIT_COMMAND} {trial_dir}"
    try:
        with np.load(path, allow_pickle=False) as stored:
            ref = OodReference(
                mean=np.asarray(stored["mean"], dtype=np.float64),
                precision=np.asarray(stored["precision"], dtype=np.float64),
                threshold=float(stored["threshold"]), alpha=float(stored["alpha"]),
                calibration_scores=np.asarray(stored["calibration_scores"], dtype=np.float64),
                calibration_key=str(stored["calibration_key"]),
                checkpoint_sha256=str(stored["checkpoint_sha256"]),
                shrinkage=float(stored["shrinkage"]), n_reference=int(stored["n_reference"]))
            layer, version = str(stored["layer"]), int(stored["format"])
    except Exception as exc:  # noqa: BLE001 - any unusable file is one clear line
        raise OodReferenceError(f"{path}: not a readable OOD reference ({type(exc).__name__})."
                                f" {fix}") from None
    d = len(ref.mean)
    problem = None
    if version != FORMAT or layer != LAYER:
        problem = f"format {version} of layer {layer!r}, not {FORMAT} of {LAYER!r}"
    elif ref.mean.ndim != 1 or ref.precision.shape != (d, d) or ref.calibration_scores.ndim != 1:
        problem = "the mean, precision and scores do not fit together"
    elif not all(np.isfinite(a).all() for a in (ref.mean, ref.precision, ref.threshold)):
        problem = "non-finite numbers in the mean, precision or threshold"
    elif not ref.threshold > 0 or not 0 < ref.alpha < 1:
        problem = f"threshold {ref.threshold} is not > 0 or alpha {ref.alpha} not in (0, 1)"
    if problem:
        raise OodReferenceError(f"{path}: {problem}. {fix}")
    if ref.checkpoint_sha256 != checkpoint_sha256(Path(trial_dir) / CHECKPOINT):
        raise OodReferenceError(f"{path} was fitted for another checkpoint.pt (the trial was "
                                f"retrained or the file copied). {fix}")
    return ref


def combinable(refs: list[OodReference]) -> str | None:
    """Why the references cannot make one ensemble score (``None`` when they can)."""
    first = refs[0]
    for ref in refs[1:]:
        if ref.alpha != first.alpha:
            return f"the members' references have different alpha ({first.alpha}, {ref.alpha})"
        if (ref.calibration_key != first.calibration_key
                or len(ref.calibration_scores) != len(first.calibration_scores)):
            return "the members' references were calibrated on different validation images"
    return None


def ensemble_score(refs: list[OodReference], distances: list[np.ndarray]
                   ) -> tuple[np.ndarray, float]:
    """``(ood_score [N], threshold)``: the mean of ``d_i / t_i`` and its calibrated threshold.

    Raises:
        OodReferenceError: :func:`combinable` refuses the references.
    """
    reason = combinable(refs)
    if reason:
        raise OodReferenceError(reason)
    score = np.mean([d / ref.threshold for ref, d in zip(refs, distances, strict=True)], axis=0)
    if len(refs) == 1:
        return score, 1.0
    validation = np.mean([ref.calibration_scores / ref.threshold for ref in refs], axis=0)
    return score, conformal_threshold(validation, refs[0].alpha)
