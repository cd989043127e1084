r"""Calibration of the merger probability: ECE, reliability curves, temperature scaling.

- **Expected calibration error** (Naeini et al. 2015; Guo et al. 2017, "On calibration of
  modern neural networks", ICML, eq. 3), with the *top-label* confidence of the binary
  classifier, ``conf_i = max(p_i, 1 - p_i)`` and ``correct_i = [(p_i >= 0.5) == y_i]``, in
  ``M`` equal-width bins ``B_m`` of ``[0, 1]``:

  .. math:: \mathrm{ECE} = \sum_m \frac{|B_m|}{n}\,|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|

  (bins ``((m-1)/M, m/M]``, the first one closed at 0). SIDDA (Pandya et al. 2025) reports
  ECE and the Brier score for galaxy-morphology DA; the Brier score is in every trial record.
- **Reliability curve**: per bin of the merger probability ``p``, its mean and the observed
  merger fraction (the reliability diagram of DeGroot & Fienberg 1983, as astronomers draw it
  for ``p_merger``), with the bin counts.
- **Temperature scaling** (Guo et al. 2017, Sec. 4.2): one scalar ``T > 0`` divides the logits,
  ``p = softmax(z / T)``, fitted by minimising the negative log-likelihood on the *source
  validation* split (labelled simulations the model did not train on). It changes no
  predicted class. Target labels are never read by the fit; they only evaluate the result.

CLI: ``python apply/calibrate.py --trial DIR`` writes ``DIR/calibration.json``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

N_BINS = 15


def _binary(labels: np.ndarray, prob_merger: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(int).ravel()
    prob = np.asarray(prob_merger, dtype=np.float64).ravel()
    if labels.shape != prob.shape:
        raise ValueError(f"{labels.size} labels but {prob.size} probabilities")
    if not np.all(np.isfinite(prob)) or prob.min(initial=0) < 0 or prob.max(initial=0) > 1:
        raise ValueError("probabilities must be finite and in [0, 1]")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return labels, prob


def _bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each value in ``[0, 1]``: ``((m-1)/M, m/M]``, value 0 in the first bin."""
    return np.clip(np.ceil(values * n_bins).astype(int) - 1, 0, n_bins - 1)


def expected_calibration_error(labels: np.ndarray, prob_merger: np.ndarray,
                               n_bins: int = N_BINS) -> float:
    """Top-label ECE of a binary classifier (formula in the module docstring)."""
    labels, prob = _binary(labels, prob_merger)
    if labels.size == 0:
        return float("nan")
    confidence = np.maximum(prob, 1 - prob)
    correct = ((prob >= 0.5).astype(int) == labels).astype(float)
    bins = _bin_index(confidence, n_bins)
    ece = 0.0
    for m in np.unique(bins):
        in_bin = bins == m
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability_curve(labels: np.ndarray, prob_merger: np.ndarray, n_bins: int = 10
                      ) -> dict[str, list[float | int | None]]:
    """Per equal-width bin of ``p_merger``: ``{"edges", "mean_prob", "fraction", "count"}``.

    ``mean_prob`` and ``fraction`` (observed merger fraction) are ``None`` for empty bins;
    ``edges`` has ``n_bins + 1`` entries.
    """
    labels, prob = _binary(labels, prob_merger)
    bins = _bin_index(prob, n_bins)
    mean_prob, fraction, count = [], [], []
    for m in range(n_bins):
        in_bin = bins == m
        n = int(in_bin.sum())
        count.append(n)
        mean_prob.append(float(prob[in_bin].mean()) if n else None)
        fraction.append(float(labels[in_bin].mean()) if n else None)
    return {"edges": np.linspace(0, 1, n_bins + 1).tolist(), "mean_prob": mean_prob,
            "fraction": fraction, "count": count}


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray,
                            temperature: float = 1.0) -> float:
    """Mean cross-entropy of ``softmax(logits / T)`` against ``labels``."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / float(temperature)
    y = torch.as_tensor(np.asarray(labels).astype(np.int64))
    return float(torch.nn.functional.cross_entropy(z, y))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature minimising :func:`negative_log_likelihood` on (``logits``, ``labels``).

    Optimises ``log T`` (so ``T > 0``) with L-BFGS from ``T = 1``, in float64; the result is
    clipped to ``[0.05, 20]``. Pass the *source validation* split: the fit reads the labels
    it is given, so never pass target labels.

    Raises:
        ValueError: empty input, non-finite logits, or fewer than two classes.
    """
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels).astype(np.int64))
    if z.ndim != 2 or z.shape[1] != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need logits [N, 2] and N labels, got {list(z.shape)} and {len(y)}")
    if not torch.isfinite(z).all():
        raise ValueError("logits must be finite")
    if torch.unique(y).numel() < 2:
        raise ValueError("the calibration split needs both classes")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        temperature = 1.0
    return float(np.clip(temperature, 0.05, 20.0))
