r"""Apply trained models to new cut-outs and write a merger catalogue.

Example (files the project makes; see docs/APPLY.md)::

    python apply/predict.py --trial runs/quick --images data/benchmark-v4-seed1/target.h5 \
        --out runs/catalogue
    python apply/predict.py --search runs/mmd_deepmerge --top-k 3 --images cutouts/ \
        --out runs/catalogue_top3 --calibrated

Models: ``--trial DIR [DIR ...]`` (trial folders, e.g. the ``seed_<S>`` folders of a seed
study), or ``--search LOGDIR`` (its best trial under ``--select``, default the search's own
objective; ``--top-k K`` for its K best). Images (:mod:`galaxies.cutouts`): an HDF5 file of
the schema, a ``.npy`` array, a multi-extension FITS cube, or a folder of per-object FITS
files. Each model normalises the images with the channel statistics stored in its checkpoint
for ``--domain`` (``target``, the default: new observations are the paper's target domain)
and scores them with that domain's network (AdaBN's adapted one for ``target``).

Writes ``OUT/catalogue.csv``, ``OUT/catalogue.parquet`` and ``OUT/catalogue.json``
(provenance: models, scores, threshold, input, versions), all or nothing: the files are
written into a temporary sibling folder and moved into place at the end, so a failure leaves
no partial catalogue (and an existing ``OUT`` untouched unless ``--force`` replaces it;
``--force`` replaces only a folder holding this command's catalogue files, never one with
anything else in it). ``--calibrated`` applies a temperature only when it is finite, > 0 and
was fitted for the trial's present ``checkpoint.pt`` (its SHA-256 is in ``calibration.json``).

Columns: ``object_id``, ``file``, ``row``, (HDF5: ``galaxy_id``, ``split``, ``label``),
``status`` (``ok``, or why the object was not classified: ``bad: <reason>`` for pixels that are
NaN, inf or beyond ``galaxies.validate.MAX_ABS_PIXEL`` in a folder of FITS files, or a model
output that is not finite; such rows have empty values), ``p_merger`` (the mean over the
models), ``p_merger_std`` (their spread, population std; 0 for one model), ``p_merger_<i>``
per model when there are several, ``threshold`` and ``predicted_merger``
(``p_merger >= threshold``; empty for rows not classified).

Out-of-distribution columns (:mod:`apply.ood`), whenever every model has an
``ood_reference.npz`` (``python apply/fit_ood.py --trial DIR``) and ``--domain`` is ``target``:
``ood_score`` (the Mahalanobis distance of the object's penultimate-layer features to the
target training features, divided by the model's threshold; for an ensemble the mean of the
members' ratios) and ``ood_flag`` (``ood_score`` above the threshold calibrated to flag
``alpha``, default 5 %, of target validation images: 1 for one model; for an ensemble the
conformal quantile of the members' mean validation ratio, so the rate stays ``alpha``). The
summary line and ``catalogue.json`` (``ood``) give the fraction of objects flagged and
``alpha``. Without a reference the two columns are absent and the summary says how to fit
one; a reference that is unreadable or was fitted for another checkpoint stops prediction with
one line (exit 2), as a stale ``calibration.json`` does with ``--calibrated``.

The ensemble's mean and spread are DeepHyper's ``deephyper.ensemble.aggregator.MeanAggregator
(with_scale=True)`` (mean and population standard deviation of the members' ``p_merger``). Its
``EnsemblePredictor`` is not used: its evaluators ``copy.deepcopy`` every member *and the whole
input array* into each job (DeepHyper 0.13.2, ``deephyper/evaluator/_job.py``), which doubles
the memory of a large catalogue per member and fails on a progress bar; the members run one
after the other in this process instead and share its torch threads.

Exit status: 0; 2 for bad arguments, unusable models or bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CATALOGUE_FILES = ("catalogue.csv", "catalogue.parquet", "catalogue.json")
DEFAULT_THRESHOLD = 0.5


#: The status of an object whose model output is not finite (a row not classified).
NONFINITE_OUTPUT = "bad: the model's output is not finite"


class PredictError(ValueError):
    """Bad arguments or models for prediction (exit status 2)."""


@dataclass(frozen=True)
class ModelChoice:
    """One member of the catalogue's ensemble and why it was chosen."""

    trial_dir: Path
    score: float | None = None
    rank: int | None = None


def choose_models(trials: list[str] | None = None, search: str | None = None,
                  top_k: int = 1, strategy: str = "search") -> tuple[list[ModelChoice], dict]:
    """The trial folders to apply, and how they were chosen (for ``catalogue.json``).

    Raises:
        PredictError: neither or both of ``trials``/``search``, ``top_k < 1``, a search log
            folder without ``results.csv`` or with fewer than ``top_k`` selectable trials.
    """
    if bool(trials) == bool(search):
        raise PredictError("give either --trial DIR [DIR ...] or --search LOGDIR")
    if top_k < 1:
        raise PredictError(f"--top-k must be >= 1, got {top_k}")
    if trials:
        if top_k != 1:
            raise PredictError("--top-k applies to --search only (list the trials instead)")
        return [ModelChoice(Path(t)) for t in trials], {"from": "trials"}
    from search.results import load_search
    from search.selection import SelectionError, get_strategy, rank_trials

    log_dir = Path(search)
    if not (log_dir / "results.csv").is_file():
        raise PredictError(f"{log_dir}: not a search log folder (no results.csv). Fix: pass "
                           "the --log-dir of search/run.py, or --trial for a trial folder")
    from search.logdir import LogDirError, read_results

    try:
        read_results(log_dir / "results.csv")  # strictly: a duplicated job id, bytes not text
        chosen = get_strategy(strategy)
        ranked = rank_trials(load_search(log_dir), chosen)
    except (SelectionError, LogDirError) as exc:
        raise PredictError(str(exc)) from exc
    if len(ranked) == 0:
        raise PredictError(f"{log_dir}: no finished (ok) trial to choose from yet. Fix: wait "
                           "for the search to finish a trial, or pass --trial")
    if len(ranked) < top_k:
        raise PredictError(f"{log_dir}: {len(ranked)} selectable ok trial(s) under "
                           f"{strategy!r}, fewer than --top-k {top_k}. Fix: lower --top-k")
    picks = [ModelChoice(Path(row["trial_dir"]), float(row["score"]), rank)
             for rank, (_, row) in enumerate(ranked.head(top_k).iterrows(), start=1)]
    from training.record import portable_path

    return picks, {"from": "search", "search": portable_path(log_dir), "strategy": chosen.name,
                   "oracle": chosen.oracle, "top_k": top_k}


def ensemble_prob(models: list, images: np.ndarray, domain: str = "target",
                  calibrated: bool = False, batch_size: int = 256, progress: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, std, per_model [K, N])`` of ``p_merger`` over ``models`` on raw ``images``.

    The members run one after the other in this process; DeepHyper's
    ``MeanAggregator(with_scale=True)`` fuses them (mean and population std).
    """
    from deephyper.ensemble.aggregator import MeanAggregator
    from tqdm.auto import tqdm

    with tqdm(total=len(models) * len(images), desc="classifying", unit="img",
              disable=not progress) as bar:
        per_model = np.stack([m.prob_merger(images, domain, calibrated=calibrated,
                                            batch_size=batch_size, progress=bar.update)
                              for m in models])
    aggregated = MeanAggregator(with_scale=True).aggregate(list(per_model))
    return np.asarray(aggregated["loc"]), np.asarray(aggregated["scale"]), per_model


def catalogue_frame(cutouts, mean: np.ndarray, std: np.ndarray, per_model: np.ndarray,
                    threshold: float, ood: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> pd.DataFrame:
    """The catalogue table (columns in the module docstring); unclassified rows stay empty.

    ``ood``: ``(ood_score, ood_flag)`` of the ``ok`` rows, or ``None`` (no OOD columns).
    """
    ok = cutouts.ok
    n = len(cutouts)

    def full(values: np.ndarray) -> np.ndarray:
        out = np.full(n, np.nan)
        out[ok] = values
        return out

    frame = pd.DataFrame({"object_id": cutouts.object_id, "file": cutouts.file,
                          "row": np.asarray(cutouts.row, dtype=np.int64)})
    for key, values in cutouts.columns.items():
        frame[key] = values
    frame["status"] = cutouts.status
    frame["p_merger"] = full(mean)
    frame["p_merger_std"] = full(std)
    if len(per_model) > 1:
        for i, values in enumerate(per_model):
            frame[f"p_merger_{i}"] = full(values)
    frame["threshold"] = threshold
    predicted = pd.array([pd.NA] * n, dtype="boolean")
    predicted[ok] = mean >= threshold
    frame["predicted_merger"] = predicted
    if ood is not None:
        frame["ood_score"] = full(ood[0])
        flag = pd.array([pd.NA] * n, dtype="boolean")
        flag[ok] = ood[1]
        frame["ood_flag"] = flag
    return frame


def ood_references(models: list, domain: str) -> tuple[list | None, str | None]:
    """Every model's OOD reference, or ``(None, why there is no OOD score)``.

    Raises:
        PredictError: a reference file that is unreadable or fitted for another checkpoint.
    """
    from apply.ood import FIT_COMMAND, OodReferenceError, combinable, read_reference
    from training.record import OOD_REFERENCE_FILE

    if domain != "target":
        return None, ("no OOD score with --domain source: the references describe target "
                      "images")
    try:
        refs = [read_reference(m.trial_dir) for m in models]
    except OodReferenceError as exc:
        raise PredictError(str(exc)) from exc
    missing = [str(m.trial_dir) for m, ref in zip(models, refs, strict=True) if ref is None]
    if missing:
        return None, (f"no OOD score: no {OOD_REFERENCE_FILE} in {', '.join(missing)}; fit "
                      f"one with {FIT_COMMAND} {' '.join(missing)}")
    reason = combinable(refs)
    if reason:
        return None, f"no OOD score: {reason}; refit them with one {FIT_COMMAND} ... --alpha A"
    return refs, None


def ood_columns(models: list, refs: list, images: np.ndarray, batch_size: int = 256,
                progress: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """``(ood_score, ood_flag, threshold)`` of ``images`` (the target networks' features)."""
    from tqdm.auto import tqdm

    from apply.ood import ensemble_score

    with tqdm(total=len(models) * len(images), desc="ood features", unit="img",
              disable=not progress) as bar:
        distances = [ref.distance(m.penultimate(images, "target", batch_size=batch_size,
                                                progress=bar.update))
                     for m, ref in zip(models, refs, strict=True)]
    score, threshold = ensemble_score(refs, distances)
    return score, score > threshold, threshold


def ood_meta(refs: list | None, ood: tuple | None, note: str | None) -> dict[str, Any]:
    """``catalogue.json``'s ``ood``: the rate flagged, alpha, the threshold, one summary line."""
    if refs is None or ood is None:
        return {"columns": False, "summary": note}
    score, flag, threshold = ood
    n, flagged = len(flag), int(np.sum(flag))
    alpha = refs[0].alpha
    return {
        "columns": True, "alpha": alpha, "threshold": threshold, "n_flagged": flagged,
        "fraction_flagged": flagged / n if n else None,
        "score": "Mahalanobis distance of the penultimate-layer features to the target "
                 "training features (Ledoit-Wolf covariance) / the model's threshold; "
                 "ensemble: the mean over members (apply/ood.py)",
        "members": [{"threshold": ref.threshold, "n_reference": ref.n_reference,
                     "n_calibration": len(ref.calibration_scores)} for ref in refs],
        "summary": f"OOD: {flagged} of {n} classified objects ({100 * flagged / max(n, 1):.1f} "
                   f"%) have ood_flag; the threshold flags alpha = {100 * alpha:g} % of target "
                   "validation images",
    }


def _check_replaceable(out: Path, force: bool) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty folder this command did not make.

    ``--force`` replaces a previous catalogue folder (its ``catalogue.json`` and nothing but
    the catalogue files); never a folder with anything else in it (images, a trial, data, a
    search, a home directory).
    """
    if out.exists() and not out.is_dir():
        raise PredictError(f"--out {out} is a file. Fix: pass a folder path")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise PredictError(f"--out {out} exists and is not empty. Fix: pass another folder, "
                           "or --force to replace a catalogue written there before")
    entries = sorted(entry.name for entry in out.iterdir())
    foreign = [name for name in entries if name not in CATALOGUE_FILES]
    if foreign or "catalogue.json" not in entries:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise PredictError(f"--out {out} is not a catalogue folder (it holds "
                           f"{shown or 'no catalogue.json'}); --force replaces only a folder "
                           "predict.py wrote. Fix: pass another (new or empty) folder")


def _write_all(out: Path, frame: pd.DataFrame, meta: dict[str, Any], force: bool) -> None:
    """Write the three catalogue files into a temporary sibling, then move it to ``out``.

    A replaced catalogue folder (``--force``) is restored if the move fails; no temporary
    folder is left behind either way.
    """
    from training.record import write_json

    out = Path(os.path.abspath(out))
    _check_replaceable(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = None
    try:
        frame.to_csv(tmp / "catalogue.csv", index=False)
        frame.to_parquet(tmp / "catalogue.parquet", index=False)
        write_json(tmp / "catalogue.json", meta)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / out.name, out)  # put the previous catalogue back
                raise
        else:
            os.replace(tmp, out)
        out.chmod(0o755)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def predict_catalogue(images: str | os.PathLike, out: str | os.PathLike,
                      trials: list[str] | None = None, search: str | None = None,
                      top_k: int = 1, strategy: str = "search", domain: str = "target",
                      calibrated: bool = False, threshold: float = DEFAULT_THRESHOLD,
                      split: str | None = None, device: str = "auto", batch_size: int = 256,
                      force: bool = False, progress: bool = True,
                      command: list[str] | None = None) -> pd.DataFrame:
    """Classify the cut-outs of ``images`` with the chosen models; write and return the catalogue.

    Raises:
        PredictError: bad arguments or models (:class:`apply.inference.ModelLoadError`
            included).
        InvalidDatasetError: a bad whole-file input (:mod:`galaxies.cutouts`).
    """
    import torch

    from apply.inference import DOMAINS, ModelLoadError, load_trained
    from galaxies.cutouts import read_cutouts
    from training.record import package_versions, portable_path
    from training.trainer import resolve_device

    if not 0.0 <= threshold <= 1.0:
        raise PredictError(f"--threshold must be in [0, 1], got {threshold}")
    if domain not in DOMAINS:
        raise PredictError(f"unknown --domain {domain!r}; valid: {', '.join(DOMAINS)}")
    if batch_size < 1:
        raise PredictError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(out)
    _check_replaceable(out, force)  # refuse before any work (and again before the move)
    choices, selection = choose_models(trials, search, top_k, strategy)
    try:
        torch_device = resolve_device(device)
        if torch_device.type == "cuda" and (torch_device.index or 0) >= (
                torch.cuda.device_count() if torch.cuda.is_available() else 0):
            raise ValueError("no such CUDA device on this machine. Fix: pass --device cpu "
                             "(or auto)")
    except (ValueError, RuntimeError) as exc:
        raise PredictError(f"--device {device}: {exc}") from exc
    try:
        models = [load_trained(choice.trial_dir, torch_device) for choice in choices]
        if calibrated:
            missing = [str(m.trial_dir) for m in models if m.temperature is None]
            if missing:
                raise ModelLoadError(f"no calibration.json in {', '.join(missing)}. Fix: run "
                                     "python apply/calibrate.py --trial DIR for each")
    except ModelLoadError as exc:
        raise PredictError(str(exc)) from exc
    refs, ood_note = ood_references(models, domain)  # a stale file stops before any work
    cutouts = read_cutouts(images, split)
    ok = cutouts.ok
    if not ok.any():
        raise PredictError(f"{images}: none of the {len(cutouts)} objects can be classified "
                           f"(first reason: {cutouts.status[0]})")
    mean, std, per_model = ensemble_prob(models, cutouts.images[ok], domain, calibrated,
                                         batch_size, progress)
    finite = np.isfinite(per_model).all(axis=0) & np.isfinite(mean) & np.isfinite(std)
    if not finite.all():  # never a NaN probability marked ok
        for row in np.flatnonzero(ok)[~finite]:
            cutouts.status[row] = NONFINITE_OUTPUT
        mean, std, per_model = mean[finite], std[finite], per_model[:, finite]
        ok = cutouts.ok
    ood = None if refs is None else ood_columns(models, refs, cutouts.images[ok], batch_size,
                                                progress)
    frame = catalogue_frame(cutouts, mean, std, per_model, threshold,
                            None if ood is None else ood[:2])
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "input": {"path": portable_path(Path(images)), "format": cutouts.format,
                  "split": split, "n_objects": len(cutouts), "n_classified": int(ok.sum()),
                  "n_unclassified": int((~ok).sum())},
        "selection": selection,
        "models": [{"trial_dir": portable_path(c.trial_dir), "rank": c.rank, "score": c.score,
                    "problem": m.problem, "method": m.config.method,
                    "backbone": m.config.backbone, "seed": m.config.seed,
                    "temperature": m.temperature if calibrated else None,
                    "column": f"p_merger_{i}" if len(models) > 1 else "p_merger"}
                   for i, (c, m) in enumerate(zip(choices, models, strict=True))],
        "domain": domain, "calibrated": calibrated, "threshold": threshold,
        "ensemble": "deephyper.ensemble.aggregator.MeanAggregator(with_scale=True): "
                    "p_merger = mean over models, p_merger_std = population std",
        "ood": ood_meta(refs, ood, ood_note),
        "device": str(torch_device), "versions": package_versions(),
    }
    _write_all(out, frame, meta, force)
    return frame


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of prediction."""
    parser = argparse.ArgumentParser(
        prog="apply/predict.py",
        description="Classify cut-outs (HDF5, .npy, FITS cube or a folder of FITS files) "
        "with trained models; write a merger catalogue (CSV, Parquet, JSON provenance).")
    models = parser.add_argument_group("models (one of)")
    models.add_argument("--trial", nargs="+", metavar="DIR",
                        help="trial folder(s) with record.json and checkpoint.pt; several = "
                        "an ensemble")
    models.add_argument("--search", metavar="LOGDIR", help="a search log folder: its best trial")
    parser.add_argument("--top-k", type=int, default=1, metavar="K",
                        help="with --search: ensemble of its K best trials (default 1)")
    parser.add_argument("--select", default="search", metavar="STRATEGY",
                        help="with --search: how trials are ranked (default: the search's own "
                        "objective; see search/selection.py)")
    parser.add_argument("--images", required=True, metavar="PATH",
                        help=".h5/.hdf5, .npy or .fits file, or a folder of per-object FITS")
    parser.add_argument("--split", default=None, choices=("train", "val", "test"),
                        help="HDF5 of the schema: classify one split only")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for catalogue.csv, catalogue.parquet, catalogue.json")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--domain", default="target", choices=("target", "source"),
                        help="whose channel statistics and network to use (default target)")
    parser.add_argument("--calibrated", action="store_true",
                        help="apply each model's temperature (apply/calibrate.py)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="p_merger at or above which an object is a merger (default 0.5)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apply/predict.py`` / ``galaxy-da-predict``; returns the exit code."""
    args = build_parser().parse_args(argv)
    from training.denormals import flush_denormals

    flush_denormals()  # before torch's thread pool exists: every thread flushes
    from galaxies.validate import InvalidDatasetError

    try:
        frame = predict_catalogue(
            args.images, args.out, trials=args.trial, search=args.search, top_k=args.top_k,
            strategy=args.select, domain=args.domain, calibrated=args.calibrated,
            threshold=args.threshold, split=args.split, device=args.device,
            batch_size=args.batch_size, force=args.force, progress=not args.quiet,
            command=sys.argv[:1] + list(argv if argv is not None else sys.argv[1:]))
    except (PredictError, InvalidDatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    unclassified = int((frame["status"] != "ok").sum())
    merger = int(frame["predicted_merger"].sum())
    print(f"{len(frame)} objects, {merger} predicted mergers at p >= {args.threshold}, "
          f"{unclassified} not classified (see status) -> {Path(args.out) / 'catalogue.csv'}")
    meta = json.loads((Path(args.out) / "catalogue.json").read_text())
    print(meta["ood"]["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
