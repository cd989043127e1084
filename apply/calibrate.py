r"""Fit temperature scaling on the source validation split; store it with the model.

Example::

    python apply/calibrate.py --trial runs/quick
    python apply/calibrate.py --trial runs/headline/seeds/*/seed_* \
        --summary reports/headline/calibration.json

For each trial folder (:mod:`apply.calibration` has the formulas):

1. the temperature ``T`` minimising the NLL of ``softmax(z / T)`` on the **source validation**
   split (the only labels the fit reads);
2. evaluation, after the fit, of the uncalibrated (``T = 1``) and calibrated probabilities on
   the source and target validation and test splits: ECE (15 bins, top-label), NLL, Brier
   score, and the reliability curve (10 bins of ``p_merger``). Target labels are read only
   here, to report what the source-fitted temperature does on the target.

Writes ``<trial>/calibration.json``; ``apply/predict.py --calibrated`` applies it. With
``--summary FILE.json`` also one JSON with every trial's numbers and ``FILE.md``, the table of
:func:`grouped_table` (mean ± std per study); a Markdown table per trial goes to stdout.
Exit status 0; 2 for an unusable trial or data (one line on stderr; nothing written for it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from apply.calibration import (
    N_BINS,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_curve,
)
from apply.inference import CALIBRATION_FILE, softmax_merger
from training.checkpoint import CHECKPOINT, checkpoint_sha256

EVALUATED = (("source", "val"), ("source", "test"), ("target", "val"), ("target", "test"))


def _scores(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    prob = softmax_merger(logits, temperature)
    return {"ece": expected_calibration_error(labels, prob, N_BINS),
            "nll": negative_log_likelihood(logits, labels, temperature),
            "brier": float(np.mean((prob - labels) ** 2)),
            "accuracy": float(np.mean((prob >= 0.5) == labels.astype(bool))),
            "reliability": reliability_curve(labels, prob)}


def calibrate_trial(trial_dir: str | Path, data_dir: str | Path | None = None,
                    device: str = "cpu") -> dict[str, Any]:
    """Fit ``T`` on the trial's source validation split, evaluate, write ``calibration.json``.

    Raises:
        ModelLoadError: the folder holds no usable model.
        InvalidDatasetError: the data folder is missing or invalid, or is not the data the
            trial was trained on (``galaxies.pairs.same_data``).
    """
    from apply.inference import load_with_data
    from training.record import portable_path, write_json

    model, bench, data_dir = load_with_data(trial_dir, data_dir, device)
    logits, labels = {}, {}
    for domain, split in EVALUATED:
        part = getattr(bench, domain).subset(split)
        logits[(domain, split)] = model.logits(part.images, domain)
        labels[(domain, split)] = part.labels.astype(np.int64)
    # The fit reads the source validation labels only; target labels enter the evaluation.
    temperature = fit_temperature(logits[("source", "val")], labels[("source", "val")])
    result = {
        "temperature": temperature, "fitted_on": "source_val",
        "checkpoint_sha256": checkpoint_sha256(Path(trial_dir) / CHECKPOINT),
        "n_fit": int(len(labels[("source", "val")])), "method": "temperature scaling "
        "(Guo et al. 2017): p = softmax(z / T), T minimising the source-validation NLL",
        "trial_dir": portable_path(Path(trial_dir)), "problem": model.problem,
        "seed": model.config.seed, "data_dir": portable_path(data_dir),
        "splits": {f"{d}_{s}": {"uncalibrated": _scores(logits[(d, s)], labels[(d, s)], 1.0),
                                "calibrated": _scores(logits[(d, s)], labels[(d, s)],
                                                      temperature),
                                "n": int(len(labels[(d, s)]))}
                   for d, s in EVALUATED},
    }
    write_json(Path(trial_dir) / CALIBRATION_FILE, result)
    return result


def summary_table(results: list[dict[str, Any]]) -> str:
    """Markdown: per trial ``T`` and ECE/NLL before -> after on the source and target tests."""
    lines = ["| trial | T | source ECE | target ECE | source NLL | target NLL |",
             "|---|---|---|---|---|---|"]
    for r in results:
        cells = []
        for metric in ("ece", "nll"):
            for split in ("source_test", "target_test"):
                s = r["splits"][split]
                cells.append(f"{s['uncalibrated'][metric]:.3f} → {s['calibrated'][metric]:.3f}")
        lines.append(f"| {r['trial_dir']} | {r['temperature']:.2f} | {cells[0]} | {cells[1]} | "
                     f"{cells[2]} | {cells[3]} |")
    return "\n".join(lines)


def grouped_table(results: list[dict[str, Any]]) -> str:
    """Markdown: per study (a trial folder's parent, e.g. a seed study), mean ± std over seeds.

    Columns: ``T``, then ECE and NLL on the source and target test splits, uncalibrated ->
    calibrated (population std over the study's trials; ``n`` trials).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(Path(r["trial_dir"]).parent.name, []).append(r)

    def stat(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

    lines = ["| study | n | T | source ECE | source ECE, T | target ECE | target ECE, T | "
             "target NLL | target NLL, T |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in groups.items():
        cells = [stat([r["temperature"] for r in rows])]
        for split, metric in (("source_test", "ece"), ("target_test", "ece"),
                              ("target_test", "nll")):
            for version in ("uncalibrated", "calibrated"):
                cells.append(stat([r["splits"][split][version][metric] for r in rows]))
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: Marks a summary file this command wrote (``--summary`` replaces only such a file).
SUMMARY_KIND = "galaxy-da calibration summary"


def check_summary_path(path: str) -> Path:
    """``--summary``: a ``.json`` path that is new or a summary this command wrote before.

    Never another file (a trial's ``record.json``, say), a folder, or a ``.md`` path (the
    Markdown table is written beside the JSON, ``<name>.md``).

    Raises:
        ValueError: with the fix.
    """
    summary = Path(path)
    if summary.suffix != ".json":
        raise ValueError(f"--summary {path}: give a .json path (the table goes beside it as "
                         f"{summary.with_suffix('.md').name})")
    if summary.is_dir():
        raise ValueError(f"--summary {path} is a folder. Fix: pass a file path")
    if summary.exists():
        try:
            previous = json.loads(summary.read_text())
            ours = previous.get("summary") == SUMMARY_KIND or (  # or one written before the tag
                set(previous) == {"trials"}
                and all("fitted_on" in row for row in previous["trials"]))
        except (OSError, ValueError, AttributeError, TypeError):
            ours = False
        if not ours:
            raise ValueError(f"--summary {path} exists and is not a calibration summary; it "
                             "was left as it is. Fix: pass a new file path")
    return summary


def torch_device(name: str) -> str:
    """``--device``, checked (``cpu``, ``cuda``, ``cuda:N``, ``mps``) before any work."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name}: {exc}. Fix: pass cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device here. Fix: pass --device cpu")
    return name


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of calibration."""
    parser = argparse.ArgumentParser(
        prog="apply/calibrate.py", description="Temperature scaling fitted on the source "
        "validation split; writes <trial>/calibration.json (used by predict.py --calibrated).")
    parser.add_argument("--trial", nargs="+", required=True, metavar="DIR",
                        help="trial folder(s) with record.json and checkpoint.pt")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="the trials' data folder (default: the one in each record)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--summary", default=None, metavar="FILE",
                        help="also write every trial's numbers into this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apply/calibrate.py`` / ``galaxy-da-calibrate``."""
    args = build_parser().parse_args(argv)
    from training.denormals import flush_denormals

    flush_denormals()  # before torch's thread pool exists: every thread flushes
    from apply.inference import ModelLoadError
    from galaxies.validate import InvalidDatasetError
    from training.record import write_json, write_text

    try:
        summary = check_summary_path(args.summary) if args.summary else None
        device = torch_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = []
    for trial in args.trial:
        try:
            results.append(calibrate_trial(trial, args.data, device))
        except (ModelLoadError, InvalidDatasetError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # a read-only trial folder, a full disk
            print(f"error: {trial}: cannot write {CALIBRATION_FILE} ({exc.strerror or exc}). "
                  "Fix: make the trial folder writable", file=sys.stderr)
            return 2
    if summary is not None:
        try:
            write_json(summary, {"summary": SUMMARY_KIND, "trials": results})
            write_text(summary.with_suffix(".md"), grouped_table(results))
        except OSError as exc:
            print(f"error: cannot write --summary {summary} ({exc.strerror or exc}); the "
                  "calibrations are written. Fix: pass a writable file path", file=sys.stderr)
            return 2
    print(summary_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
