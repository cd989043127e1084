r"""Paired comparison of two finished trials on the same test images ("does DA lose accuracy?").

Example (is MMD's source accuracy lower than no-DA's?)::

    python analysis/compare.py runs/paper_effect/none_deepmerge runs/paper_effect/mmd_deepmerge

Both trial folders need ``record.json`` (status ``ok``) and ``checkpoint.pt``. The best
weights are reloaded and run again on the source and target *test* splits of the data the
trial recorded (``--data`` to point elsewhere, e.g. after moving the benchmark), and each
test image is scored correct or not for both models. For each domain it prints:

- the two accuracies and their difference Δ = acc(B) - acc(A);
- a 95 % confidence interval of Δ from a *paired cluster bootstrap*: galaxies (``galaxy_id``)
  are resampled with replacement, so the five augmented copies of a merger system move
  together (they are not independent test images);
- McNemar's exact test: with b = images only A gets right and c = images only B gets right,
  the two-sided binomial p-value of c against Bin(b + c, 1/2). It treats the copies as
  independent, so it is optimistic for mergers; prefer the interval.

Δ's interval is what answers "without losing accuracy": an interval that reaches below
zero by more than the loss one is ready to call equal means the data cannot rule that loss
out. Accuracies that differ from the records' (other than by ties at p = 0.5 on another
device or thread count) are reported as a warning.

Exit status: 0 done; 2 bad input (missing or failed trial, checkpoint, data).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from galaxies.datasets import Benchmark, load_benchmark, split_tensors  # noqa: E402
from galaxies.schema import SPLITS  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.evaluate import predict  # noqa: E402
from training.loop import build_model  # noqa: E402

DOMAINS = ("source", "target")


class CompareError(ValueError):
    """Input that cannot be compared (reported with exit status 2)."""


@dataclass
class Trial:
    """A finished trial: its folder, record and model with the best weights loaded."""

    path: Path
    record: dict
    model: torch.nn.Module


def load_trial(path: str | Path) -> Trial:
    """Read a trial folder (record and checkpoint); ``CompareError`` if it is unusable."""
    path = Path(path)
    record_path, checkpoint_path = path / "record.json", path / "checkpoint.pt"
    if not record_path.is_file():
        raise CompareError(f"{record_path} is missing. Fix: pass a trial folder written by "
                           "training/train.py (it holds record.json and checkpoint.pt)")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"{record_path} is not a readable JSON record ({exc}). Fix: rerun "
                           "the trial") from exc
    if record.get("status") != "ok":
        raise CompareError(f"{path}: the trial's status is {record.get('status')!r}, not 'ok' "
                           f"({record.get('error')}). Fix: compare finished trials only")
    if not checkpoint_path.is_file():
        raise CompareError(f"{checkpoint_path} is missing. Fix: rerun the trial (the checkpoint "
                           "is written beside record.json)")
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        config = TrainConfig.from_dict(checkpoint["config"])
        model = build_model(config)
        model.load_state_dict(checkpoint["model"])
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one input error
        raise CompareError(f"{checkpoint_path} cannot be loaded ({type(exc).__name__}: {exc}). "
                           "Fix: rerun the trial") from exc
    return Trial(path, record, model.eval())


def correctness(trial: Trial, bench: Benchmark, domain: str) -> np.ndarray:
    """Whether the trial's model classifies each test image of ``domain`` correctly (bool [N])."""
    images, labels = split_tensors(getattr(bench, domain), "test", bench.stats)
    pred = predict(trial.model, images, None, torch.device("cpu"))
    return (pred.prob_merger >= 0.5) == labels.numpy().astype(bool)


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


def compare(
    path_a: str | Path, path_b: str | Path, data: str | Path | None = None, n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per domain (source, target test) comparing trial B against trial A."""
    trial_a, trial_b = load_trial(path_a), load_trial(path_b)
    dirs = {Path(t.record["data"]["dir"]).resolve() for t in (trial_a, trial_b)}
    if data is None and len(dirs) > 1:
        raise CompareError(f"the trials were trained on different data ({sorted(map(str, dirs))})"
                           ". Fix: compare trials of one benchmark, or pass --data")
    data_dir = Path(data) if data is not None else dirs.pop()
    try:
        bench = load_benchmark(data_dir)
    except (OSError, ValueError) as exc:
        raise CompareError(f"cannot load the test data from {data_dir}: {exc}. Fix: pass "
                           "--data with the benchmark the trials were trained on") from exc
    rows, warnings = [], []
    for domain in DOMAINS:
        data_split = getattr(bench, domain)
        groups = data_split.galaxy_id[data_split.split == SPLITS["test"]]
        correct = {}
        for name, trial in (("A", trial_a), ("B", trial_b)):
            correct[name] = correctness(trial, bench, domain)
            recorded = trial.record["metrics"][f"{domain}_test"]["accuracy"]
            if abs(correct[name].mean() - recorded) > 2.0 / len(correct[name]):
                warnings.append(f"{trial.path}: recomputed {domain} test accuracy "
                                f"{correct[name].mean():.4f} differs from the record's "
                                f"{recorded:.4f} (other data?)")
        row = paired_difference(correct["A"], correct["B"], groups, n_boot, seed)
        rows.append({"domain": domain, **row})
    table = pd.DataFrame(rows).set_index("domain")
    table.attrs["warnings"] = warnings
    table.attrs["a"], table.attrs["b"] = str(trial_a.path), str(trial_b.path)
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
    lines += [f"warning: {w}" for w in table.attrs.get("warnings", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="trial folder A (the reference, e.g. no-DA)")
    parser.add_argument("b", help="trial folder B (e.g. a DA method)")
    parser.add_argument("--data", default=None, help="benchmark folder (default: the trials')")
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = parser.parse_args(argv)
    if args.bootstrap < 100:
        parser.error(f"--bootstrap {args.bootstrap} is too few for a 95 % interval. Fix: use "
                     ">= 100 (default 2000)")
    try:
        table = compare(args.a, args.b, args.data, args.bootstrap, args.seed)
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
