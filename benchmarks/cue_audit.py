r"""Which image cues separate mergers from non-mergers, in the source and in the target?

Usage::

    python benchmarks/cue_audit.py --data data/benchmark-v3-seed1 [--max-per-class 150] \
        [--workers 2] [--json OUT.json] [--seed 0]

For each domain it draws a class-balanced sample of *galaxies* from the train and the test
split (one augmented copy per galaxy, so the five copies of a merger do not count five
times; at most N galaxies per class and split, the same rows in both domains when the target
is made from the source), measures :func:`galaxies.morphometry.image_statistics` (layout +
statmorph on F160W) and prints:

1. a markdown table with every statistic's ROC AUC for merger vs non-merger in the source
   and in the target (NaNs dropped, counts shown), sorted by the largest ``|AUC - 0.5|``;
   an AUC far from 0.5 for a *layout* statistic such as ``peak_offset`` (framing) is a cue
   a CNN can learn without looking at morphology;
2. the accuracy on the source and target test samples of a gradient-boosting classifier
   (``HistGradientBoostingClassifier``, fixed seed, no early stopping, nothing chosen on
   test) trained on the source train sample with all statistics, the layout family only and
   the statmorph family only, so that one sees which family carries the signal.

statmorph is the slow part: about 0.3 CPU seconds per image (measured on the v3 benchmark:
0.32 source, 0.28 target). The default N = 200 (lowered from 1000; 800 images per domain on
v3, 1600 in all) takes about 4.5 minutes on two free cores; 9.5 minutes were measured with
the two cores shared with other jobs. ``--json`` writes everything (atomically). Exit status
0; 2 on a missing or invalid data folder or bad arguments.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxies.morphometry import LAYOUT_COLUMNS, MORPHOLOGY_FEATURES
from galaxies.schema import SPLITS

DEFAULT_MAX_PER_CLASS = 200
AUDIT_SPLITS = ("train", "test")
DOMAINS = ("source", "target")
#: Feature families of the gradient-boosting fits (segment counts belong to the layout).
FAMILIES: dict[str, list[str]] = {
    "all": [*LAYOUT_COLUMNS, *MORPHOLOGY_FEATURES, "n_segments", "segment_area"],
    "layout": [*LAYOUT_COLUMNS, "n_segments", "segment_area"],
    "statmorph": list(MORPHOLOGY_FEATURES),
}
AUDIT_GBT = {"max_iter": 200, "early_stopping": False}  # no split chosen on anything


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the statmorph workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def auc_with_count(labels: np.ndarray, values: np.ndarray) -> tuple[float | None, int]:
    """ROC AUC of ``values`` for label 1 with non-finite values dropped, and the count kept."""
    from sklearn.metrics import roc_auc_score

    keep = np.isfinite(values)
    n = int(keep.sum())
    if n == 0 or np.unique(labels[keep]).size < 2:
        return None, n
    return float(roc_auc_score(labels[keep], values[keep])), n


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def auc_table(frames: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per statistic, its AUC and count in each domain, sorted by the largest |AUC - 0.5|."""
    statistics = [c for c in frames["source"].columns
                  if c not in ("label", "split", "galaxy_id", "row", "morph_flag")]
    rows = []
    for name in statistics:
        row: dict[str, Any] = {"statistic": name,
                               "family": "layout" if name in FAMILIES["layout"] else "statmorph"}
        for domain in DOMAINS:
            frame = frames[domain]
            auc, n = auc_with_count(frame["label"].to_numpy(), frame[name].to_numpy(float))
            row[f"auc_{domain}"], row[f"n_{domain}"] = auc, n
        separations = [abs(row[f"auc_{d}"] - 0.5) for d in DOMAINS if row[f"auc_{d}"] is not None]
        row["max_separation"] = max(separations) if separations else 0.0
        rows.append(row)
    return sorted(rows, key=lambda r: -r["max_separation"])


def gbt_accuracies(frames: dict[str, pd.DataFrame], seed: int) -> dict[str, dict[str, Any]]:
    """Accuracy on source and target test of gradient boosting fit on the source train sample."""
    from training.classical import make_estimator, one_thread

    train = frames["source"][frames["source"]["split"] == SPLITS["train"]]
    results = {}
    for family, columns in FAMILIES.items():
        estimator = make_estimator(seed, **AUDIT_GBT)
        with one_thread():
            estimator.fit(train[columns].to_numpy(float), train["label"].to_numpy(int))
        result: dict[str, Any] = {"features": columns, "n_train": int(len(train))}
        for domain in DOMAINS:
            test = frames[domain][frames[domain]["split"] == SPLITS["test"]]
            with one_thread():
                predicted = estimator.predict(test[columns].to_numpy(float))
            result[f"{domain}_test_accuracy"] = float(np.mean(predicted == test["label"]))
            result[f"n_{domain}_test"] = int(len(test))
        results[family] = result
    return results


def markdown_auc(rows: list[dict[str, Any]]) -> str:
    lines = ["| statistic | family | AUC source | n source | AUC target | n target |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['statistic']} | {r['family']} | {_fmt(r['auc_source'])} | {r['n_source']} "
              f"| {_fmt(r['auc_target'])} | {r['n_target']} |" for r in rows]
    return "\n".join(lines)


def markdown_gbt(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| features | n features | n train | source test acc | target test acc |",
             "|---|---|---|---|---|"]
    lines += [f"| {family} | {len(r['features'])} | {r['n_train']} "
              f"| {_fmt(r['source_test_accuracy'])} (n={r['n_source_test']}) "
              f"| {_fmt(r['target_test_accuracy'])} (n={r['n_target_test']}) |"
              for family, r in results.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/cue_audit.py",
        description="ROC AUC of every layout and statmorph statistic for merger vs "
                    "non-merger in source and target, and gradient-boosting accuracies.",
        epilog="statmorph costs about 0.3 CPU s per image; the default --max-per-class "
               f"{DEFAULT_MAX_PER_CLASS} (4 x N galaxies per domain: 1600 images on the v3 "
               "benchmark) takes about 4.5 minutes on 2 free cores (9.5 measured on 2 shared "
               "ones).")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder with source.h5 and target.h5")
    parser.add_argument("--max-per-class", type=int, default=DEFAULT_MAX_PER_CLASS, metavar="N",
                        help="galaxies per class and split (train, test), one copy each; all "
                             f"if fewer (default {DEFAULT_MAX_PER_CLASS}, lowered from 1000 "
                             "because statmorph is slow: 1000 takes ~17 min on 2 free cores)")
    parser.add_argument("--workers", type=int, default=2, help="statmorph processes (default 2)")
    parser.add_argument("--json", metavar="OUT.json", default=None,
                        help="write the whole result as JSON")
    parser.add_argument("--seed", type=int, default=0, help="sample and estimator seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_per_class < 1 or args.workers < 1:
        parser.error("--max-per-class and --workers must be >= 1")

    from galaxies.datasets import load_benchmark
    from galaxies.morphometry import image_statistics, statistics_settings
    from galaxies.validate import InvalidDatasetError
    from training.classical import galaxy_sample
    from training.record import package_versions, portable_path, write_json

    start = time.perf_counter()
    try:
        bench = load_benchmark(args.data)
    except InvalidDatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = {"source": bench.source, "target": bench.target}
    versions = {d: data[d].attrs.get("generator_version") for d in DOMAINS}
    print(f"data: {portable_path(bench.data_dir)}  generator_version: source "
          f"{versions['source']}, target {versions['target']}")

    frames: dict[str, pd.DataFrame] = {}
    sizes: dict[str, dict[str, dict[str, int]]] = {}
    statmorph_s: dict[str, float] = {}
    statmorph_cpu: dict[str, float] = {}
    flags: dict[str, dict[str, int]] = {}
    for domain in DOMAINS:
        domain_data = data[domain]
        rows = np.concatenate([galaxy_sample(domain_data, split, args.max_per_class, args.seed)
                               for split in AUDIT_SPLITS])
        tick, cpu = time.perf_counter(), cpu_seconds()
        frame = image_statistics(domain_data.images[rows], **statistics_settings(
            domain_data.attrs), workers=args.workers, progress=not args.quiet)
        statmorph_s[domain] = (time.perf_counter() - tick) / max(len(rows), 1)
        statmorph_cpu[domain] = (cpu_seconds() - cpu) / max(len(rows), 1)
        frame["label"] = domain_data.labels[rows].astype(int)
        frame["split"] = domain_data.split[rows].astype(int)
        frame["galaxy_id"] = domain_data.galaxy_id[rows]
        frame["row"] = rows
        frames[domain] = frame
        sizes[domain] = {split: {"merger": int(((frame.split == SPLITS[split])
                                               & (frame.label == 1)).sum()),
                                 "non-merger": int(((frame.split == SPLITS[split])
                                                   & (frame.label == 0)).sum())}
                         for split in AUDIT_SPLITS}
        flags[domain] = {str(int(k)): int(v) for k, v in
                         frame["morph_flag"].value_counts().sort_index().items()}
    for domain in DOMAINS:
        parts = ", ".join(f"{split} {s['merger']} mergers + {s['non-merger']} non-mergers"
                          for split, s in sizes[domain].items())
        print(f"{domain}: {parts} (one copy per galaxy); statmorph flags {flags[domain]}; "
              f"statistics {statmorph_cpu[domain]:.3f} CPU s/image, "
              f"{statmorph_s[domain]:.3f} s/image wall with {args.workers} workers")

    aucs = auc_table(frames)
    print("\n## ROC AUC per statistic (merger vs non-merger)\n")
    print(markdown_auc(aucs))
    gbt = gbt_accuracies(frames, args.seed)
    print("\n## Gradient boosting trained on the source train sample\n")
    print(markdown_gbt(gbt))
    wall = time.perf_counter() - start
    print(f"\nwall time: {wall:.1f} s")

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, {
            "data_dir": portable_path(bench.data_dir),
            "generator_version": versions,
            "seed": args.seed,
            "max_per_class": args.max_per_class,
            "workers": args.workers,
            "sample_sizes": sizes,
            "morph_flag_counts": flags,
            "statistics_wall_s_per_image": statmorph_s,
            "statistics_cpu_s_per_image": statmorph_cpu,
            "auc": {r["statistic"]: {"family": r["family"],
                                     **{d: {"auc": r[f"auc_{d}"], "n": r[f"n_{d}"]}
                                        for d in DOMAINS}} for r in aucs},
            "auc_order": [r["statistic"] for r in aucs],
            "gbt": gbt,
            "wall_time_s": wall,
            "versions": package_versions(),
        })
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
