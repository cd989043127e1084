r"""The classical baseline as a trial: gradient boosting on statmorph + layout statistics.

Example::

    python training/classical.py --data data/benchmark-v3-seed1 --out runs/classical_seed1 \\
        --seed 1 --workers 2

What it does, in the order it happens:

1. Measures :func:`galaxies.morphometry.image_statistics` (layout + statmorph, F160W) of
   the rows it needs: a class-balanced sample of the SOURCE train split (one augmented copy
   per galaxy, at most ``max_train_galaxies`` galaxies per class, drawn with ``seed``), and
   every row of source val, target val, source test and target test. The statistics are
   cached in ``OUT/statistics.npz``, keyed per row by the image's digest and the measurement
   settings (noise sigma, pixel scale), with the data folder's identity stored beside them;
   the cache is saved after every block of images, so an interrupted run resumes where it
   stopped and a rerun on the same data measures nothing again.
2. Fits ``sklearn.ensemble.HistGradientBoostingClassifier`` (:data:`GBT_PARAMS`, seeded with
   ``seed``; NaN statistics of failed measurements are handled natively) on the source
   train sample. Early stopping watches the log-loss on the SOURCE validation split (every
   row). No label of the target and no test split enters the fit or any choice.
3. Scores every row of the four evaluation splits (file order, as ``training.loop``) and
   writes ``OUT/roc.json``, ``OUT/predictions.npz``, ``OUT/classical.json`` (fit details:
   features, boosting iterations, sample sizes, statmorph flag counts) and, last and
   atomically, ``OUT/record.json`` in the trial-record schema of ``docs/CONTRACTS.md``
   (``problem: classical_gbt``, ``method: classical``, ``backbone: gbt``), so
   ``analysis/compare.py`` pairs it with any CNN trial on the same data.

Its :data:`SPEC` (:class:`training.registry.BaselineSpec`) gives tables and figures its label,
colour and place: first among the arms, in DeepMerge's tables.

Measuring the statistics takes about 0.3 CPU seconds per image (v3: 0.32 source, 0.28
target), so the v3 benchmark's 9254 evaluation rows plus the 1000 training galaxies of the
default take about 3100 CPU seconds: some 26 minutes on two free cores, once (then the
cache answers).

Exit status of the command line: 0 done, 2 bad arguments or data (one line on stderr; no
record is written).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxies.schema import SPLITS, DomainData
from training.registry import BaselineSpec, register_baseline

__all__ = [
    "GBT_PARAMS",
    "PROBLEM",
    "SPEC",
    "STATISTICS",
    "TABLE_LABEL",
    "cached_statistics",
    "feature_columns",
    "galaxy_sample",
    "main",
    "make_estimator",
    "one_thread",
    "run_classical",
    "run_seed_study",
]

PROBLEM, METHOD, BACKBONE = "classical_gbt", "classical", "gbt"
TABLE_LABEL = "classical: statmorph + layout, gradient boosting"  #: its row in Table 1
#: The arm in tables and figures: label, colour, first of the arms, in DeepMerge's tables.
SPEC = register_baseline(BaselineSpec(
    name=METHOD, problem=PROBLEM, label=TABLE_LABEL, color="#E6AB02",
    module="training.classical", joins="deepmerge", order=0,
    summary="gradient boosting on statmorph + layout statistics, no network"))
STATISTICS = "statistics.npz"
DETAILS = "classical.json"
STATISTICS_VERSION = "1"  # bump when galaxies.morphometry changes what a column means
BLOCK_IMAGES = 128  # images measured between two cache saves
DEFAULT_MAX_TRAIN_GALAXIES = 500
EVAL_SPLITS = (("source", "val"), ("target", "val"), ("source", "test"), ("target", "test"))
#: Gradient-boosting hyperparameters (``random_state`` is the trial's seed).
GBT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "max_iter": 500,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "n_iter_no_change": 20,
    "scoring": "loss",
    "validation_fraction": None,  # early stopping watches the source val split (X_val)
}


class ClassicalError(ValueError):
    """Arguments a classical trial cannot run with (reported with exit status 2)."""


def make_estimator(seed: int, **overrides: Any):
    """A ``HistGradientBoostingClassifier`` with :data:`GBT_PARAMS` (and ``overrides``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**{**GBT_PARAMS, **overrides, "random_state": seed})


def one_thread():
    """A context that limits OpenMP to one thread (``threadpoolctl``).

    The gradient-boosting fits here are small: with one thread they give identical results
    several times faster on a busy machine (OpenMP threads spin-wait on shared cores).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def feature_columns() -> list[str]:
    """The statistics the classifier sees: every layout column and every statmorph one.

    ``morph_flag`` is left out (it is a failure code, not a measurement; a failed
    measurement shows up as NaN statistics instead).
    """
    from galaxies.morphometry import LAYOUT_COLUMNS, MORPHOLOGY_COLUMNS

    return [c for c in (*LAYOUT_COLUMNS, *MORPHOLOGY_COLUMNS) if c != "morph_flag"]


def galaxy_sample(data: DomainData, split: str, max_per_class: int | None,
                  seed: int) -> np.ndarray:
    """Rows of a class-balanced sample of *galaxies* of one split: one augmented copy each.

    For each class, the split's galaxies (distinct ``galaxy_id``) are shuffled and the first
    ``max_per_class`` kept (all when fewer, or when ``max_per_class`` is ``None``); each kept
    galaxy contributes one of its rows, drawn at random. The draws depend only on ``seed``,
    the split and the class, so two domains with the same ids, labels and splits (a target
    made from the source) get the same rows.

    Returns:
        Sorted row indices into ``data``.
    """
    rows = np.flatnonzero(data.split == SPLITS[split])
    picked: list[int] = []
    for label in (0, 1):
        class_rows = rows[data.labels[rows] == label]
        if class_rows.size == 0:
            continue
        rng = np.random.default_rng([seed, SPLITS[split], label])
        ids, inverse = np.unique(data.galaxy_id[class_rows], return_inverse=True)
        order = rng.permutation(len(ids))
        if max_per_class is not None:
            order = order[:max_per_class]
        for galaxy in order:
            copies = class_rows[inverse == galaxy]
            picked.append(int(copies[rng.integers(len(copies))]))
    return np.sort(np.asarray(picked, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# statistics cache


def _digests(images: np.ndarray) -> np.ndarray:
    """A 64-bit BLAKE2b digest of every image's bytes (the cache key of a row)."""
    out = np.empty(len(images), dtype=np.uint64)
    for i, image in enumerate(images):
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8)
        out[i] = int.from_bytes(digest.digest(), "little")
    return out


def _read_cache(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    """The cache's arrays, or ``{}`` when it is missing, unreadable or of another version."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            cache = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError):
        return {}
    if (str(cache.get("version", "")) != STATISTICS_VERSION
            or cache.get("columns", np.array([])).tolist() != columns):
        return {}
    return cache


def cached_statistics(data: dict[str, DomainData], rows: dict[str, np.ndarray],
                      cache_path: str | os.PathLike, workers: int = 2, progress: bool = True,
                      identity: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """``image_statistics`` of the given rows of each domain, reusing and extending a cache.

    A cached row is reused when its row index, image digest and measurement settings (noise
    sigma, pixel scale: ``galaxies.morphometry.statistics_settings``) all match; the
    missing rows are measured in blocks of :data:`BLOCK_IMAGES`, and the cache file is
    rewritten atomically after each block (so an interrupted run resumes).

    Args:
        data: ``{"source": DomainData, "target": DomainData}`` (or a subset of the domains).
        rows: per domain, the row indices needed.
        cache_path: the ``.npz`` cache (created if missing).
        workers: statmorph worker processes.
        progress: show a progress bar over the rows still to measure.
        identity: the data folder's identity, stored in the cache for reference.

    Returns:
        Per domain, a frame indexed by row (sorted), with the columns of
        ``galaxies.morphometry`` (layout, then statmorph).
    """
    from tqdm.auto import tqdm

    from galaxies.morphometry import (
        LAYOUT_COLUMNS,
        MORPHOLOGY_COLUMNS,
        image_statistics,
        statistics_settings,
    )
    from training.record import write_npz

    cache_path = Path(cache_path)
    columns = [*LAYOUT_COLUMNS, *MORPHOLOGY_COLUMNS]
    cache = _read_cache(cache_path, columns)
    state: dict[str, dict[str, np.ndarray]] = {}
    todo: dict[str, np.ndarray] = {}
    for domain, domain_data in data.items():
        wanted = np.unique(np.asarray(rows.get(domain, []), dtype=np.int64))
        settings = json.dumps(statistics_settings(domain_data.attrs), sort_keys=True)
        digests = _digests(domain_data.images[wanted])
        entry = {"rows": wanted, "digest": digests,
                 "values": np.full((len(wanted), len(columns)), np.nan), "done":
                 np.zeros(len(wanted), dtype=bool)}
        if cache and str(cache.get(f"{domain}_settings", "")) == settings:
            known = {(int(r), int(d)): i for i, (r, d) in enumerate(
                zip(cache[f"{domain}_rows"], cache[f"{domain}_digest"], strict=True))}
            for i, key in enumerate(zip(wanted.tolist(), digests.tolist(), strict=True)):
                j = known.get(key)
                if j is not None:
                    entry["values"][i] = cache[f"{domain}_values"][j]
                    entry["done"][i] = True
        entry["settings"] = np.asarray(settings)
        state[domain] = entry
        todo[domain] = np.flatnonzero(~entry["done"])

    def save() -> None:
        arrays: dict[str, Any] = {"version": np.asarray(STATISTICS_VERSION),
                                  "columns": np.asarray(columns),
                                  "identity": np.asarray(json.dumps(identity, default=str))}
        for domain in ("source", "target"):
            entry = state.get(domain)
            old_rows = cache.get(f"{domain}_rows") if cache else None
            if entry is None and old_rows is not None:  # keep domains not asked for
                for part in ("rows", "digest", "values", "settings"):
                    arrays[f"{domain}_{part}"] = cache[f"{domain}_{part}"]
                continue
            if entry is None:
                continue
            keep = entry["done"]
            new_rows, new_digest = entry["rows"][keep], entry["digest"][keep]
            new_values = entry["values"][keep]
            if (old_rows is not None and str(cache.get(f"{domain}_settings", ""))
                    == str(entry["settings"])):  # keep cached rows this call did not ask for
                mine = set(zip(new_rows.tolist(), new_digest.tolist(), strict=True))
                other = np.array([(int(r), int(d)) not in mine for r, d in zip(
                    old_rows, cache[f"{domain}_digest"], strict=True)], dtype=bool)
                new_rows = np.concatenate([new_rows, old_rows[other]])
                new_digest = np.concatenate([new_digest, cache[f"{domain}_digest"][other]])
                new_values = np.concatenate([new_values, cache[f"{domain}_values"][other]])
            arrays.update({f"{domain}_rows": new_rows, f"{domain}_digest": new_digest,
                           f"{domain}_values": new_values, f"{domain}_settings": entry["settings"]})
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_npz(cache_path, arrays)

    total = int(sum(len(t) for t in todo.values()))
    if total:
        with tqdm(total=total, desc="statistics", unit="img", disable=not progress) as bar:
            for domain, missing in todo.items():
                entry, images = state[domain], data[domain].images
                settings = statistics_settings(data[domain].attrs)
                for start in range(0, len(missing), BLOCK_IMAGES):
                    block = missing[start : start + BLOCK_IMAGES]
                    frame = image_statistics(images[entry["rows"][block]], **settings,
                                             workers=workers, progress=False)
                    entry["values"][block] = frame[columns].to_numpy(dtype=np.float64)
                    entry["done"][block] = True
                    save()
                    bar.update(len(block))
    elif not cache_path.exists():
        save()
    return {domain: pd.DataFrame(entry["values"], index=entry["rows"], columns=columns)
            for domain, entry in state.items()}


# --------------------------------------------------------------------------------------------
# the trial


def _scalar_params(estimator) -> dict[str, Any]:
    """The estimator's hyperparameters that are JSON scalars."""
    return {key: value for key, value in estimator.get_params().items()
            if value is None or isinstance(value, (bool, int, float, str))}


def run_classical(data_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 1,
                  max_train_galaxies: int = DEFAULT_MAX_TRAIN_GALAXIES, workers: int = 2,
                  progress: bool = True, statistics_path: str | os.PathLike | None = None,
                  ) -> dict[str, Any]:
    """Fit the classical baseline on the source and score every evaluation row.

    Args:
        data_dir: folder with ``source.h5`` and ``target.h5``.
        out_dir: the trial's folder (``record.json``, ``roc.json``, ``predictions.npz``,
            ``classical.json`` and the statistics cache ``statistics.npz``).
        seed: seeds the training sample and the estimator.
        max_train_galaxies: source train galaxies per class (one copy each).
        workers: statmorph worker processes.
        progress: show a progress bar while measuring.
        statistics_path: the statistics cache (default ``out_dir/statistics.npz``; the seeds
            of a seed study share one).

    Returns:
        The trial record (``docs/CONTRACTS.md``, status ``ok``).

    Raises:
        InvalidDatasetError: the data files are missing or do not follow the schema.
        ClassicalError: unusable arguments (non-positive counts, a source train split with
            one class only, an ``out_dir`` that is a file).
    """
    import torch

    from galaxies.datasets import load_benchmark
    from galaxies.pairs import data_identity
    from training.compute_path import machine
    from training.metrics import classification_metrics, roc_points
    from training.record import (
        PREDICTIONS,
        RECORD,
        portable_path,
        record_skeleton,
        write_json,
        write_npz,
    )

    start = time.perf_counter()
    if max_train_galaxies < 1 or workers < 1:
        raise ClassicalError(f"max_train_galaxies ({max_train_galaxies}) and workers "
                             f"({workers}) must be >= 1. Fix: pass positive values")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ClassicalError(f"--out {out_dir} is a file. Fix: pass a folder")
    bench = load_benchmark(data_dir)
    data = {"source": bench.source, "target": bench.target}
    train_rows = galaxy_sample(bench.source, "train", max_train_galaxies, seed)
    train_labels = bench.source.labels[train_rows]
    if np.unique(train_labels).size < 2:
        raise ClassicalError(f"{data_dir}: the source train split holds one class only. "
                             "Fix: use a benchmark with mergers and non-mergers in train")
    split_rows = {(domain, split): np.flatnonzero(data[domain].split == SPLITS[split])
                  for domain, split in EVAL_SPLITS}
    needed = {"source": np.concatenate([train_rows, split_rows[("source", "val")],
                                        split_rows[("source", "test")]]),
              "target": np.concatenate([split_rows[("target", "val")],
                                        split_rows[("target", "test")]])}
    out_dir.mkdir(parents=True, exist_ok=True)
    measure_start = time.perf_counter()
    cache = Path(statistics_path) if statistics_path is not None else out_dir / STATISTICS
    identity = data_identity(data_dir)
    stats = cached_statistics(data, needed, cache, workers=workers,
                              progress=progress, identity=identity)
    measure_s = time.perf_counter() - measure_start

    features = feature_columns()

    def matrix(domain: str, rows: np.ndarray) -> np.ndarray:
        return stats[domain].loc[rows, features].to_numpy(dtype=np.float64)

    val_rows = split_rows[("source", "val")]
    estimator = make_estimator(seed)
    with one_thread():
        estimator.fit(matrix("source", train_rows), train_labels.astype(int),
                      X_val=matrix("source", val_rows),
                      y_val=bench.source.labels[val_rows].astype(int))
    merger_column = int(np.flatnonzero(estimator.classes_ == 1)[0])

    metrics: dict[str, Any] = {}
    roc: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}
    for domain, split in EVAL_SPLITS:
        rows = split_rows[(domain, split)]
        key = f"{domain}_{split}"
        labels = data[domain].labels[rows].astype(np.uint8)
        with one_thread():
            p_merger = estimator.predict_proba(matrix(domain, rows))[:, merger_column]
        p_merger = p_merger.astype(np.float64)
        metrics[key] = classification_metrics(labels, p_merger)
        roc[key] = roc_points(labels, p_merger)
        predictions[f"{key}_p_merger"] = p_merger
        predictions[f"{key}_label"] = labels
        predictions[f"{key}_galaxy_id"] = data[domain].galaxy_id[rows].astype(np.int64)

    config = {"method": METHOD, "backbone": BACKBONE, "seed": seed,
              "max_train_galaxies": max_train_galaxies, **_scalar_params(estimator)}
    config["random_state"] = seed
    flags = {domain: {str(int(k)): int(v) for k, v in frame["morph_flag"].value_counts()
                      .sort_index().items() if math.isfinite(k)}
             for domain, frame in stats.items()}
    details = {
        "features": features,
        "n_iter": int(estimator.n_iter_),
        "train_rows": int(len(train_rows)),
        "train_per_class": {str(k): int(v) for k, v in zip(*np.unique(
            train_labels, return_counts=True), strict=True)},
        "early_stopping_rows": int(len(val_rows)),
        "statistics": STATISTICS,
        "statistics_rows": {domain: int(len(frame)) for domain, frame in stats.items()},
        "morph_flag_counts": flags,
        "measure_time_s": measure_s,
    }
    write_json(out_dir / "roc.json", roc)
    write_npz(out_dir / PREDICTIONS, predictions)
    write_json(out_dir / DETAILS, details)
    record = record_skeleton(PROBLEM, config, "cpu")
    record.update(
        status="ok", metrics=metrics, wall_time_s=time.perf_counter() - start,
        machine=machine(torch.device("cpu")),
        data={"dir": portable_path(bench.data_dir), "source_attrs": bench.source.attrs,
              "target_attrs": bench.target.attrs, "channel_stats": None,
              "identity": identity},
        files={"roc": "roc.json", "predictions": PREDICTIONS})
    write_json(out_dir / RECORD, record)
    return record


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of the classical trial."""
    parser = argparse.ArgumentParser(
        prog="training/classical.py",
        description="Classical baseline: gradient boosting on statmorph + layout statistics "
                    "of the source train split; scores source/target val and test.",
    )
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder with source.h5 and target.h5")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="trial folder (record.json, roc.json, predictions.npz, cache)")
    parser.add_argument("--seed", type=int, default=1, help="sample and estimator seed")
    parser.add_argument("--max-train-galaxies", type=int, default=DEFAULT_MAX_TRAIN_GALAXIES,
                        metavar="N", help="source train galaxies per class, one copy each "
                        f"(default {DEFAULT_MAX_TRAIN_GALAXIES})")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="a seed study instead of one trial: seeds 1..N into "
                        "OUT/seed_<S>/ with OUT/seeds.json and one shared statistics cache "
                        "(read by analysis/report.py like any seed study); seeds already "
                        "done are kept")
    parser.add_argument("--workers", type=int, default=2, help="statmorph processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run_seed_study(data_dir: str | os.PathLike, out_dir: str | os.PathLike, seeds: int,
                   max_train_galaxies: int = DEFAULT_MAX_TRAIN_GALAXIES, workers: int = 2,
                   progress: bool = True, command: str = "") -> list[dict[str, Any]]:
    """Seeds 1..``seeds`` of the classical baseline as a seed study (``search.seeds`` layout).

    Writes ``out_dir/seeds.json`` (``problem, method, backbone, config, seeds, origin,
    data_dir, data, command, versions``) and ``out_dir/seed_<S>/`` trials; the statistics are
    measured once (``out_dir/statistics.npz``). A seed whose record is ``ok`` is not rerun.

    Raises:
        InvalidDatasetError: the data files are missing or do not follow the schema.
        ClassicalError: bad arguments, or ``out_dir`` holds a study made on other data
            (``galaxies.pairs.same_data`` of its ``seeds.json`` or an ``ok`` seed record;
            nothing is written then).
    """
    from galaxies.pairs import data_identity
    from galaxies.validate import validate_pair
    from training.record import (
        RECORD,
        package_versions,
        portable_path,
        read_json,
        study_data_mismatch,
        write_json,
    )

    if seeds < 1:
        raise ClassicalError(f"--seeds {seeds} must be >= 1. Fix: pass a positive count")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ClassicalError(f"--out {out_dir} is a file. Fix: pass a folder")
    identity = data_identity(data_dir)
    if None in identity.values():
        validate_pair(data_dir)  # a missing or unreadable file: its own one-line error
    why = study_data_mismatch(out_dir, identity)
    if why:
        raise ClassicalError(f"{out_dir} holds a seed study made on other data than {data_dir} "
                             f"({why}). Fix: pass the study's own --data, or choose another "
                             "--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "seeds.json", {
        "problem": PROBLEM, "method": METHOD, "backbone": BACKBONE,
        "config": {"method": METHOD, "backbone": BACKBONE,
                   "max_train_galaxies": max_train_galaxies},
        "seeds": list(range(1, seeds + 1)), "origin": "training/classical.py defaults",
        "data_dir": portable_path(data_dir), "data": identity, "command": command,
        "versions": package_versions()})
    records = []
    for seed in range(1, seeds + 1):
        folder = out_dir / f"seed_{seed}"
        done = read_json(folder / RECORD)
        if done is not None and done.get("status") == "ok":
            records.append(done)
            continue
        records.append(run_classical(data_dir, folder, seed=seed,
                                     max_train_galaxies=max_train_galaxies, workers=workers,
                                     progress=progress, statistics_path=out_dir / STATISTICS))
    return records


def main(argv: list[str] | None = None) -> int:
    """Run the classical trial; print its test metrics; return the exit code."""
    from galaxies.validate import InvalidDatasetError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.seeds is not None:
            records = run_seed_study(args.data, args.out, args.seeds,
                                     max_train_galaxies=args.max_train_galaxies,
                                     workers=args.workers, progress=not args.quiet,
                                     command=" ".join(["training/classical.py", *(argv or
                                                                                 sys.argv[1:])]))
            for record in records:
                print(f"seed {record['seed']}: source test accuracy "
                      f"{record['metrics']['source_test']['accuracy']:.4f}, target test "
                      f"accuracy {record['metrics']['target_test']['accuracy']:.4f}")
            return 0
        record = run_classical(args.data, args.out, seed=args.seed,
                               max_train_galaxies=args.max_train_galaxies,
                               workers=args.workers, progress=not args.quiet)
    except (InvalidDatasetError, ClassicalError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {key: {m: round(v, 4) if v is not None else None for m, v in values.items()}
               for key, values in record["metrics"].items()}
    print(json.dumps({"problem": PROBLEM, "wall_time_s": round(record["wall_time_s"], 1),
                      "metrics": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
