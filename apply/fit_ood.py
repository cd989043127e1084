r"""Fit a trial's out-of-distribution reference once; store it with the model.

Example::

    python apply/fit_ood.py --trial runs/quick
    python apply/fit_ood.py --trial runs/seeds/mmd_deepmerge/seed_* --alpha 0.01

For each trial folder (:mod:`apply.ood` has the formulas): the penultimate-layer features of
the trial's target network on the **target training** split (the reference: mean and
Ledoit-Wolf precision) and on the **target validation** split (the threshold: the conformal
``1 - alpha`` quantile of their Mahalanobis distances). No test image and no label is read.

Writes ``<trial>/ood_reference.npz`` (with the SHA-256 of the trial's ``checkpoint.pt``);
``apply/predict.py`` then adds ``ood_score`` and ``ood_flag`` to its catalogues. Prints one
line per trial. Exit status 0; 2 for an unusable trial, data or argument (one line on stderr;
nothing written for that trial).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apply.ood import DEFAULT_ALPHA, OodReference, OodReferenceError
from training.record import OOD_REFERENCE_FILE


def fit_trial(trial_dir: str | Path, data_dir: str | Path | None = None,
              alpha: float = DEFAULT_ALPHA, device: str = "cpu") -> OodReference:
    """Fit the reference of ``trial_dir`` on its target train/validation splits and write it.

    Raises:
        ModelLoadError: the folder holds no usable model.
        InvalidDatasetError: the data folder is missing or invalid, or is not the data the
            trial was trained on (``galaxies.pairs.same_data``).
        OodReferenceError: ``alpha`` outside (0, 1), too few images, non-finite features.
    """
    from apply.inference import load_with_data
    from apply.ood import check_alpha, fit_reference, images_key, write_reference
    from training.checkpoint import CHECKPOINT, checkpoint_sha256
    from training.record import portable_path

    check_alpha(alpha)
    model, bench, data_dir = load_with_data(trial_dir, data_dir, device)
    # The reference and the threshold read target train and validation images; no labels.
    train = bench.target.subset("train").images
    val = bench.target.subset("val").images
    ref = fit_reference(model.penultimate(train, "target"), model.penultimate(val, "target"),
                        alpha, checkpoint_sha256(Path(trial_dir) / CHECKPOINT), images_key(val))
    write_reference(trial_dir, ref, problem=model.problem, data_dir=portable_path(data_dir),
                    trial=portable_path(Path(trial_dir)))
    return ref


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of the OOD fit."""
    parser = argparse.ArgumentParser(
        prog="apply/fit_ood.py", description="Fit the out-of-distribution reference of trained "
        "models on their target training and validation splits; writes <trial>/"
        f"{OOD_REFERENCE_FILE} (predict.py then adds ood_score and ood_flag).")
    parser.add_argument("--trial", nargs="+", required=True, metavar="DIR",
                        help="trial folder(s) with record.json and checkpoint.pt")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="the trials' data folder (default: the one in each record)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="the rate of ordinary target images flagged (default 0.05)")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apply/fit_ood.py``; returns the exit code."""
    args = build_parser().parse_args(argv)
    from training.denormals import flush_denormals

    flush_denormals()  # before torch's thread pool exists: every thread flushes
    from apply.calibrate import torch_device
    from apply.inference import ModelLoadError
    from apply.ood import check_alpha
    from galaxies.validate import InvalidDatasetError

    try:
        check_alpha(args.alpha)
    except OodReferenceError as exc:
        print(f"error: --alpha: {exc}", file=sys.stderr)
        return 2
    try:
        device = torch_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for trial in args.trial:
        try:
            ref = fit_trial(trial, args.data, args.alpha, device)
        except (ModelLoadError, InvalidDatasetError, OodReferenceError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # a read-only trial folder, a full disk
            print(f"error: {trial}: cannot write {OOD_REFERENCE_FILE} ({exc.strerror or exc})."
                  " Fix: make the trial folder writable", file=sys.stderr)
            return 2
        print(f"{trial}: threshold {ref.threshold:.4g} = the conformal {1 - ref.alpha:g} "
              f"quantile of {len(ref.calibration_scores)} target validation distances (alpha "
              f"{ref.alpha:g}); reference: {ref.n_reference} target training images, "
              f"{len(ref.mean)} features, shrinkage {ref.shrinkage:.3g} -> "
              f"{Path(trial) / OOD_REFERENCE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
