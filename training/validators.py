"""Label-free validators: model-selection scores computed without a single target label.

Every trial record carries them in ``record["diagnostics"]`` (:func:`training.scoring.score_splits`,
also for a stopper's per-epoch :func:`training.scoring.interim_record`); each one is a search
objective of :mod:`search.objectives` and hence a selection strategy of
:mod:`search.selection`. Each is declared once, with its key and direction, in the registry of
:mod:`training.label_free`; this module holds the formulas. They read only the *validation*
splits: the labelled source validation split, and the target validation split's features and
predicted probabilities (never its labels; ``tests/test_validators.py`` flips the target
labels and checks that no validator moves).

Already computed elsewhere: source validation accuracy (``metrics["source_val"]``) and loss
(``source_val_loss``), the feature MMD (``feature_mmd_val``,
:func:`training.evaluate.feature_mmd`) and the mean target entropy (``target_val_entropy``,
:func:`training.metrics.mean_entropy`). This module adds (``p_i``: the class probabilities
``[N, C]`` of target row ``i``, ``H``: the entropy in nats):

- **IM**, information maximisation (Gomes et al. 2010; Shi & Sha 2012; as a validator in
  Musgrave et al. 2022, "Benchmarking validation methods for unsupervised domain
  adaptation"): ``IM = H(mean_i p_i) - mean_i H(p_i)``, diversity minus mean entropy; higher
  is better (confident yet not collapsed onto one class). Key ``target_val_im``.
- **SND**, soft neighbourhood density (Saito et al. 2021, ICCV, "Tune it the right way"):
  ``z_i = f_i / |f_i|``, ``S_ij = z_i . z_j`` with the diagonal removed,
  ``P_ij = softmax_j(S_ij / tau)`` per row (``tau = 0.05``, the paper's),
  ``SND = mean_i H(P_i)``; higher is better (dense neighbourhoods). Computed on the target
  validation *features* (the paper's default input is the softmax output, which for two
  classes is a one-dimensional curve; the features carry more structure), on at most
  :data:`SND_MAX_SAMPLES` rows (a fixed random subset above that). Key ``target_val_snd``.
- **BNM**, batch nuclear-norm (Cui et al. 2020, CVPR): ``BNM = ||P||_* / N`` for the
  ``[N, C]`` target probability matrix ``P`` (sum of its singular values); higher is better
  (confident and diverse predictions). Key ``target_val_bnm``.
- **DEV**, deep embedded validation (You et al. 2019, ICML): a domain classifier
  (scikit-learn logistic regression on standardised features, fixed seed) separates source
  from target validation features; the density ratio of source row ``i`` is
  ``w_i = p(target | f_i) / p(source | f_i) * n_s / n_t``; with the per-row source
  cross-entropy ``l_i`` and ``L_i = w_i l_i``, the risk with the control variate is
  ``DEV = mean(L) + eta * mean(w) - eta``, ``eta = -Cov(L, w) / Var(w)`` (sample covariance
  and variance, ``ddof = 1``, as the authors' code; ``eta = 0`` when ``Var(w) = 0``, e.g.
  ``w = 1`` gives the mean source loss). Lower is better; the record stores the risk
  (``dev_risk``) and the objective is its negative. At most :data:`DEV_MAX_SAMPLES` rows per
  domain (a fixed random subset above that); the classifier's probabilities are clipped to
  ``[DEV_PROB_EPS, 1 - DEV_PROB_EPS]`` so that a weight stays finite.

Degenerate inputs give NaN, never an exception: no or too few rows, non-finite values, a
zero-length feature vector (SND), features with no variation at all (collapsed: SND would be
``log(N - 1)``, its maximum, and DEV's classifier would have nothing to learn, so both are
NaN rather than a best score), and a domain without rows (DEV).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

#: Temperature of SND's softmax over cosine similarities (Saito et al. 2021).
SND_TEMPERATURE = 0.05
#: SND builds an N x N similarity matrix: at most this many target rows (fixed subset above).
SND_MAX_SAMPLES = 1000
#: DEV's domain classifier sees at most this many rows per domain (fixed subset above).
DEV_MAX_SAMPLES = 2000
#: DEV clips the domain classifier's probabilities to [eps, 1 - eps] (finite weights).
DEV_PROB_EPS = 1e-6
#: Seed of the subsets and of the domain classifier.
VALIDATOR_SEED = 0

NAN = float("nan")


def _as_float64(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _subset(n: int, limit: int, seed: int = VALIDATOR_SEED) -> np.ndarray:
    """All row indices when ``n <= limit``, else a fixed random subset of ``limit`` (sorted)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of ``probs`` (``0 log 0 = 0``)."""
    logs = np.log(np.where(probs > 0, probs, 1.0))
    return -(probs * logs).sum(axis=-1)


def class_probabilities(prob_merger: np.ndarray | torch.Tensor) -> np.ndarray:
    """``[N]`` merger probabilities -> ``[N, 2]`` class probabilities ``[1 - p, p]``."""
    p = _as_float64(prob_merger).reshape(-1)
    return np.stack([1.0 - p, p], axis=1)


def _valid_probabilities(probs: np.ndarray | torch.Tensor) -> np.ndarray | None:
    probs = _as_float64(probs)
    if probs.ndim != 2 or len(probs) == 0 or probs.shape[1] == 0:
        return None
    if not np.isfinite(probs).all():
        return None
    return np.clip(probs, 0.0, 1.0)


def information_maximization(probs: np.ndarray | torch.Tensor) -> float:
    """IM = ``H(mean_i p_i) - mean_i H(p_i)`` of ``[N, C]`` class probabilities (nats).

    Higher is better. NaN for an empty or non-finite input.
    """
    probs = _valid_probabilities(probs)
    if probs is None:
        return NAN
    return float(_entropy(probs.mean(axis=0)) - _entropy(probs).mean())


def batch_nuclear_norm(probs: np.ndarray | torch.Tensor) -> float:
    """BNM = ``||P||_* / N``: the sum of the singular values of ``[N, C]`` ``P``, over ``N``.

    Higher is better. NaN for an empty or non-finite input.
    """
    probs = _valid_probabilities(probs)
    if probs is None:
        return NAN
    return float(np.linalg.svd(probs, compute_uv=False).sum() / len(probs))


def _valid_features(features: np.ndarray | torch.Tensor, min_rows: int) -> np.ndarray | None:
    """``[N, D]`` float64 features, or None when degenerate (see the module docstring)."""
    features = _as_float64(features)
    if features.ndim != 2 or len(features) < min_rows or features.shape[1] == 0:
        return None
    if not np.isfinite(features).all():
        return None
    return features


def soft_neighborhood_density(features: np.ndarray | torch.Tensor,
                              temperature: float = SND_TEMPERATURE,
                              max_samples: int = SND_MAX_SAMPLES) -> float:
    """SND: mean entropy of each row's softmax over cosine similarities to the other rows.

    Args:
        features: ``[N, D]`` target features (or probabilities).
        temperature: the softmax temperature ``tau``.
        max_samples: at most this many rows (a fixed random subset above it).

    Returns:
        ``mean_i H(softmax_{j != i}(cos(f_i, f_j) / tau))`` in nats; higher is better. NaN for
        fewer than 2 rows, non-finite values, a zero feature vector, or identical rows.
    """
    features = _valid_features(features, min_rows=2)
    if features is None:
        return NAN
    features = features[_subset(len(features), max_samples)]
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    if not (norms > 0).all() or np.ptp(features, axis=0).max() == 0:
        return NAN
    z = torch.from_numpy(features / norms)
    n = len(z)
    similarity = z @ z.T
    off_diagonal = similarity[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
    log_p = torch.log_softmax(off_diagonal / temperature, dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    return float(entropy.mean())


def dev_risk_from_weights(weights: np.ndarray, losses: np.ndarray) -> float:
    """DEV risk of per-row ``losses`` with importance ``weights`` (You et al. 2019, Alg. 1).

    ``L = w * l``; ``eta = -Cov(L, w) / Var(w)`` (``ddof = 1``; 0 when ``Var(w) = 0``);
    ``risk = mean(L) + eta * mean(w) - eta``. NaN for fewer than 2 rows, mismatched lengths
    or non-finite values.
    """
    weights, losses = _as_float64(weights).reshape(-1), _as_float64(losses).reshape(-1)
    if len(weights) < 2 or len(weights) != len(losses):
        return NAN
    if not (np.isfinite(weights).all() and np.isfinite(losses).all()):
        return NAN
    weighted = weights * losses
    var_w = float(np.var(weights, ddof=1))
    eta = 0.0 if var_w == 0 else -float(np.cov(weighted, weights, ddof=1)[0, 1]) / var_w
    risk = float(weighted.mean() + eta * weights.mean() - eta)
    return risk if math.isfinite(risk) else NAN


def dev_weights(source_features: np.ndarray | torch.Tensor,
                target_features: np.ndarray | torch.Tensor,
                seed: int = VALIDATOR_SEED) -> np.ndarray | None:
    """Density ratios ``w_i = p(t | f_i) / p(s | f_i) * n_s / n_t`` of the source rows.

    A logistic regression (scikit-learn, standardised features, ``random_state=seed``) is
    fitted to tell the ``source_features`` (class 0) from the ``target_features`` (class 1)
    and evaluated on the source rows; its probabilities are clipped to
    ``[DEV_PROB_EPS, 1 - DEV_PROB_EPS]``.

    Returns:
        ``[n_s]`` weights, or None when degenerate (a domain with fewer than 1 row, fewer
        than 2 source rows, non-finite values, mismatched widths, no variation at all).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    source = _valid_features(source_features, min_rows=2)
    target = _valid_features(target_features, min_rows=1)
    if source is None or target is None or source.shape[1] != target.shape[1]:
        return None
    both = np.concatenate([source, target])
    if np.ptp(both, axis=0).max() == 0:
        return None
    domain = np.r_[np.zeros(len(source)), np.ones(len(target))]
    scaled = StandardScaler().fit_transform(both)
    classifier = LogisticRegression(max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: the weights are still usable
        classifier.fit(scaled, domain)
    p_target = classifier.predict_proba(scaled[: len(source)])[:, 1]
    p_target = np.clip(p_target, DEV_PROB_EPS, 1 - DEV_PROB_EPS)
    return p_target / (1 - p_target) * len(source) / len(target)


def dev_risk(source_features: np.ndarray | torch.Tensor, source_losses: np.ndarray,
             target_features: np.ndarray | torch.Tensor,
             max_samples: int = DEV_MAX_SAMPLES, seed: int = VALIDATOR_SEED) -> float:
    """DEV risk of the source validation rows, weighted towards the target (lower is better).

    Args:
        source_features: ``[n_s, D]`` source validation features.
        source_losses: ``[n_s]`` per-row source cross-entropy losses.
        target_features: ``[n_t, D]`` target validation features (no labels).
        max_samples: at most this many rows per domain (fixed random subsets above it).
        seed: seed of the subsets and of the domain classifier.

    Returns:
        :func:`dev_risk_from_weights` of :func:`dev_weights`; NaN when either is degenerate.
    """
    source, losses = _as_float64(source_features), _as_float64(source_losses).reshape(-1)
    target = _as_float64(target_features)
    if source.ndim != 2 or target.ndim != 2 or len(source) != len(losses):
        return NAN
    pick_s, pick_t = _subset(len(source), max_samples, seed), _subset(len(target), max_samples,
                                                                      seed + 1)
    weights = dev_weights(source[pick_s], target[pick_t], seed=seed)
    if weights is None:
        return NAN
    return dev_risk_from_weights(weights, losses[pick_s])
