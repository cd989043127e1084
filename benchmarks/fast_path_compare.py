r"""Does the fast path lose accuracy? Paired fp32-versus-``auto`` table from finished trials.

Reads ``--runs/<path>/<problem>/seed_<S>/`` (``record.json`` and ``predictions.npz``) for the
paths ``fp32`` and ``auto`` written by ``benchmarks/fast_path_pairs.sh``, and for every problem
reports, on the **validation** splits (source and target; the choice of a default never reads
a test split): each path's accuracy (mean ± std over training seeds), the paired difference
auto − fp32 averaged over seeds with its 95 % cluster-bootstrap interval over validation
galaxies (:func:`analysis.compare.paired_difference_over_seeds`), the epochs run, and the
median training time per epoch of each path (its ratio is the trial's own speed-up, both paths
measured side by side in one run). Copies each record (JSON only, no checkpoint or
predictions) under ``--out/records/`` and writes ``--out/fast_path.json`` and ``.md``.

Example::

    python benchmarks/fast_path_compare.py --runs runs/fast_path --out reports/fast_path

Exit status: 0 done; 2 missing, failed or unpaired trials.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from analysis.compare import CompareError, paired_difference_over_seeds
from training.record import PREDICTIONS, read_record

PATHS = ("fp32", "auto")
DOMAINS = ("source", "target")


def _trials(runs: Path, path: str, problem: str) -> dict[int, Path]:
    return {int(folder.name.removeprefix("seed_")): folder
            for folder in sorted((runs / path / problem).glob("seed_*"))}


def compare_problem(runs: Path, problem: str, n_boot: int = 2000) -> dict[str, Any]:
    """The paired comparison of one problem (see the module docstring)."""
    seeds = {path: _trials(runs, path, problem) for path in PATHS}
    if set(seeds["fp32"]) != set(seeds["auto"]) or not seeds["fp32"]:
        raise CompareError(f"{problem}: seeds differ between the paths "
                           f"({ {p: sorted(s) for p, s in seeds.items()} }). Fix: finish "
                           "benchmarks/fast_path_pairs.sh")
    order = sorted(seeds["fp32"])
    records = {path: [read_record(seeds[path][s]) for s in order] for path in PATHS}
    for path in PATHS:
        for seed, record in zip(order, records[path], strict=True):
            if record is None or record.get("status") != "ok":
                raise CompareError(f"{problem} {path} seed {seed}: no ok record.json. "
                                   "Fix: rerun benchmarks/fast_path_pairs.sh")
    out: dict[str, Any] = {"problem": problem, "seeds": order, "paths": {}}
    for path in PATHS:
        rows = records[path]
        out["paths"][path] = {
            "compute_path": rows[0].get("compute_path"),
            "machine": rows[0].get("machine"),
            "epochs_run": [r["epochs_run"] for r in rows],
            "best_epoch": [r["best_epoch"] for r in rows],
            "epoch_train_s": statistics.median(
                row["train_time_s"] for r in rows for row in r["history"]),
            "wall_time_s": [round(r["wall_time_s"], 1) for r in rows],
            **{f"{domain}_val_accuracy": [r["metrics"][f"{domain}_val"]["accuracy"]
                                          for r in rows] for domain in DOMAINS},
        }
    out["epoch_speedup"] = (out["paths"]["fp32"]["epoch_train_s"]
                            / out["paths"]["auto"]["epoch_train_s"])
    for domain in DOMAINS:
        correct, groups = {}, None
        for path in PATHS:
            rows = []
            for seed in order:
                with np.load(seeds[path][seed] / PREDICTIONS) as npz:
                    key = f"{domain}_val"
                    labels = npz[f"{key}_label"].astype(bool)
                    rows.append((npz[f"{key}_p_merger"] >= 0.5) == labels)
                    ids = npz[f"{key}_galaxy_id"]
                if groups is not None and not np.array_equal(groups, ids):
                    raise CompareError(f"{problem}: the trials were scored on other images")
                groups = ids
            correct[path] = np.stack(rows)
        out[f"{domain}_delta"] = paired_difference_over_seeds(
            correct["fp32"], correct["auto"], groups, n_boot, seed=0)
    return out


def committable(record: dict[str, Any]) -> dict[str, Any]:
    """The record as committed: no absolute path.

    A data folder outside the repository (reached through a symlinked ``data/``) is named
    ``data/<folder>``.
    """
    data_dir = record.get("data", {}).get("dir")
    if data_dir and Path(data_dir).is_absolute():
        record = {**record, "data": {**record["data"], "dir": f"data/{Path(data_dir).name}"}}
    return record


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """The table of ``benchmarks/results/speed.md`` (validation accuracy in %)."""
    def pct(values: list[float]) -> str:
        return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}"

    def delta(d: dict[str, Any]) -> str:
        low, high = d["ci_low"], d["ci_high"]
        return f"{100 * d['delta']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"

    lines = ["| problem | source val fp32 | source val auto | Δ source | target val fp32 | "
             "target val auto | Δ target | epochs run fp32 / auto | s per epoch fp32 / auto "
             "(speed-up) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        fp32, auto = row["paths"]["fp32"], row["paths"]["auto"]
        lines.append(
            f"| `{row['problem']}` | {pct(fp32['source_val_accuracy'])} | "
            f"{pct(auto['source_val_accuracy'])} | {delta(row['source_delta'])} | "
            f"{pct(fp32['target_val_accuracy'])} | {pct(auto['target_val_accuracy'])} | "
            f"{delta(row['target_delta'])} | {fp32['epochs_run']} / {auto['epochs_run']} | "
            f"{fp32['epoch_train_s']:.1f} / {auto['epoch_train_s']:.1f} "
            f"(x{row['epoch_speedup']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the comparison of every problem found under ``--runs/fp32``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/fast_path")
    parser.add_argument("--out", default="reports/fast_path")
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args(argv)
    runs, out = Path(args.runs), Path(args.out)
    problems = sorted(p.name for p in (runs / "fp32").glob("*") if p.is_dir())
    try:
        if not problems:
            raise CompareError(f"{runs}/fp32 holds no problem. Fix: run "
                               "benchmarks/fast_path_pairs.sh first")
        rows = [compare_problem(runs, problem, args.bootstrap) for problem in problems]
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in PATHS:
        for problem in problems:
            for seed, folder in _trials(runs, path, problem).items():
                target = out / "records" / path / problem / f"seed_{seed}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(committable(read_record(folder)), indent=1) + "\n")
    (out / "fast_path.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "fast_path.md").write_text(format_markdown(rows))
    print(format_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
