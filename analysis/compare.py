r"""Paired comparison of two finished trials on the same test images ("does DA lose accuracy?").

Example (is MMD's source accuracy lower than no-DA's?)::

    python analysis/compare.py runs/paper_effect/none_deepmerge runs/paper_effect/mmd_deepmerge

Both trial folders need ``record.json`` (status ``ok``) and ``predictions.npz`` (the
per-image predictions every trial writes beside its record): nothing is rerun. Both trials must
have been scored on the same test images (same ``galaxy_id`` and labels). For each domain it
prints:

- the two accuracies and their difference Δ = acc(B) - acc(A);
- a 95 % confidence interval of Δ from a *paired cluster bootstrap*: galaxies (``galaxy_id``)
  are resampled with replacement, so the five augmented copies of a merger system move
  together (they are not independent test images);
- McNemar's exact test: with b = images only A gets right and c = images only B gets right,
  the two-sided binomial p-value of c against Bin(b + c, 1/2). It treats the copies as
  independent, so it is optimistic for mergers; prefer the interval.

Δ's interval is what answers "without losing accuracy": an interval that reaches below
zero by more than the loss one is ready to call equal means the data cannot rule that loss
out.

Exit status: 0 done; 2 bad input (missing or failed trial, checkpoint, data).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from training.record import PREDICTIONS, portable_path, read_record

DOMAINS = ("source", "target")


class CompareError(ValueError):
    """Input that cannot be compared (reported with exit status 2)."""


@dataclass
class Trial:
    """A finished trial: its folder, record and per-image test predictions."""

    path: Path
    record: dict
    predictions: dict[str, np.ndarray]


def load_trial(path: str | Path) -> Trial:
    """Read a trial folder (record and predictions); ``CompareError`` if it is unusable."""
    path = Path(path)
    record_path, predictions_path = path / "record.json", path / PREDICTIONS
    if not record_path.is_file():
        raise CompareError(f"{record_path} is missing. Fix: pass a trial folder written by "
                           "training/train.py (it holds record.json and predictions.npz)")
    record = read_record(path)
    if record is None:
        raise CompareError(f"{record_path} is not a readable JSON record. Fix: rerun the trial")
    if record.get("status") != "ok":
        raise CompareError(f"{path}: the trial's status is {record.get('status')!r}, not 'ok' "
                           f"({record.get('error')}). Fix: compare finished trials only")
    if not predictions_path.is_file():
        raise CompareError(f"{predictions_path} is missing (trials written before predictions "
                           "were stored lack it). Fix: rerun the trial")
    try:
        with np.load(predictions_path) as archive:
            predictions = {key: archive[key] for key in archive.files}
        for domain in DOMAINS:
            for part in ("p_merger", "label", "galaxy_id"):
                predictions[f"{domain}_test_{part}"]  # noqa: B018 - presence check
    except (OSError, ValueError, KeyError) as exc:
        raise CompareError(f"{predictions_path} cannot be read ({type(exc).__name__}: {exc}). "
                           "Fix: rerun the trial") from exc
    return Trial(path, record, predictions)


def correctness(trial: Trial, domain: str) -> np.ndarray:
    """Whether the trial's model classified each test image of ``domain`` correctly (bool [N])."""
    p = trial.predictions[f"{domain}_test_p_merger"]
    labels = trial.predictions[f"{domain}_test_label"].astype(bool)
    return (p >= 0.5) == labels


def paired_difference(
    correct_a: np.ndarray, correct_b: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> dict[str, float]:
    """Δ = acc(B) - acc(A), its 95 % cluster-bootstrap interval and McNemar's exact p-value.

    Args:
        correct_a: per-image correctness of model A (bool [N]).
        correct_b: per-image correctness of model B (bool [N]).
        groups: cluster of each image (``galaxy_id``: augmented copies share one), [N].
        n_boot: bootstrap resamples of the clusters.
        seed: seed of the resampling.
    """
    _, cluster = np.unique(groups, return_inverse=True)
    n_clusters = int(cluster.max()) + 1
    size = np.bincount(cluster, minlength=n_clusters).astype(float)
    sum_a = np.bincount(cluster, weights=correct_a.astype(float), minlength=n_clusters)
    sum_b = np.bincount(cluster, weights=correct_b.astype(float), minlength=n_clusters)
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # bounded memory: 256 resamples at a time
        pick = rng.integers(0, n_clusters, size=(min(256, n_boot - start), n_clusters))
        deltas[start : start + len(pick)] = (sum_b[pick].sum(1) - sum_a[pick].sum(1)) / size[
            pick
        ].sum(1)
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    p = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {
        "acc_a": float(correct_a.mean()),
        "acc_b": float(correct_b.mean()),
        "delta": float(correct_b.mean() - correct_a.mean()),
        "ci_low": float(np.percentile(deltas, 2.5)),
        "ci_high": float(np.percentile(deltas, 97.5)),
        "only_a": only_a,
        "only_b": only_b,
        "mcnemar_p": float(p),
        "n_images": int(len(correct_a)),
        "n_galaxies": n_clusters,
    }


def paired_difference_over_seeds(
    correct_a: np.ndarray, correct_b: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> dict[str, float | list[float]]:
    """Δ = acc(B) - acc(A) averaged over training seeds, with a paired cluster bootstrap.

    Each method was trained with the same seeds on the same data; the seed-``k`` run of A is
    paired with the seed-``k`` run of B. Δ is the mean over seeds of the per-seed accuracy
    difference; its 95 % interval resamples galaxies (clusters of ``groups``) of the per-image
    seed-mean correctness difference, so it states the test-set uncertainty of the
    seed-averaged Δ (the seed-to-seed spread is ``per_seed``, and the std columns of a table).

    Args:
        correct_a: per-seed, per-image correctness of A (bool [S, N]); rows = seeds in order.
        correct_b: the same for B, same seeds in the same order.
        groups: cluster of each image (``galaxy_id``), [N].
        n_boot: bootstrap resamples.
        seed: seed of the resampling.

    Raises:
        CompareError: the two have different shapes or no seed.
    """
    correct_a, correct_b = np.atleast_2d(correct_a), np.atleast_2d(correct_b)
    if correct_a.shape != correct_b.shape or correct_a.shape[0] == 0:
        raise CompareError(f"paired seeds need equal shapes, got {correct_a.shape} and "
                           f"{correct_b.shape}. Fix: run both methods with the same seeds")
    per_image = correct_b.astype(float).mean(0) - correct_a.astype(float).mean(0)
    _, cluster = np.unique(groups, return_inverse=True)
    n_clusters = int(cluster.max()) + 1
    size = np.bincount(cluster, minlength=n_clusters).astype(float)
    sums = np.bincount(cluster, weights=per_image, minlength=n_clusters)
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_boot)
    for start in range(0, n_boot, 256):
        pick = rng.integers(0, n_clusters, size=(min(256, n_boot - start), n_clusters))
        deltas[start : start + len(pick)] = sums[pick].sum(1) / size[pick].sum(1)
    per_seed = correct_b.mean(1) - correct_a.mean(1)
    return {
        "delta": float(per_image.mean()),
        "ci_low": float(np.percentile(deltas, 2.5)),
        "ci_high": float(np.percentile(deltas, 97.5)),
        "per_seed": [float(d) for d in per_seed],
        "n_seeds": int(correct_a.shape[0]),
        "n_images": int(correct_a.shape[1]),
        "n_galaxies": n_clusters,
    }


def compare(path_a: str | Path, path_b: str | Path, n_boot: int = 2000, seed: int = 0
            ) -> pd.DataFrame:
    """One row per domain (source, target test) comparing trial B against trial A.

    Raises:
        CompareError: a trial is unusable, or the two were scored on different test images.
    """
    trial_a, trial_b = load_trial(path_a), load_trial(path_b)
    rows = []
    for domain in DOMAINS:
        for part in ("galaxy_id", "label"):
            key = f"{domain}_test_{part}"
            if not np.array_equal(trial_a.predictions[key], trial_b.predictions[key]):
                raise CompareError(f"the trials were scored on different {domain} test images "
                                   f"({key} differs). Fix: compare trials of one benchmark")
        groups = trial_a.predictions[f"{domain}_test_galaxy_id"]
        row = paired_difference(correctness(trial_a, domain), correctness(trial_b, domain),
                                groups, n_boot, seed)
        rows.append({"domain": domain, **row})
    table = pd.DataFrame(rows).set_index("domain")
    table.attrs["a"], table.attrs["b"] = portable_path(trial_a.path), portable_path(trial_b.path)
    return table


def format_table(table: pd.DataFrame) -> str:
    """Percentages and the interval as text, one line per domain."""
    lines = [f"A = {table.attrs.get('a')}", f"B = {table.attrs.get('b')}",
             "test accuracy (%), delta = B - A with its 95 % paired cluster-bootstrap interval:"]
    for domain, r in table.iterrows():
        lines.append(
            f"  {domain:6s}  A {100 * r.acc_a:5.1f}  B {100 * r.acc_b:5.1f}  "
            f"delta {100 * r.delta:+5.1f} [{100 * r.ci_low:+5.1f}, {100 * r.ci_high:+5.1f}]  "
            f"only A right {int(r.only_a)}, only B right {int(r.only_b)}, McNemar p "
            f"{r.mcnemar_p:.2g}  ({int(r.n_images)} images, {int(r.n_galaxies)} galaxies)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="trial folder A (the reference, e.g. no-DA)")
    parser.add_argument("b", help="trial folder B (e.g. a DA method)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = parser.parse_args(argv)
    if args.bootstrap < 100:
        parser.error(f"--bootstrap {args.bootstrap} is too few for a 95 % interval. Fix: use "
                     ">= 100 (default 2000)")
    try:
        table = compare(args.a, args.b, args.bootstrap, args.seed)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(table))
    if args.json:
        from training.record import write_json

        write_json(args.json, {"a": table.attrs["a"], "b": table.attrs["b"],
                               "rows": table.reset_index().to_dict(orient="records")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
