"""One training trial: ``L = L_CL + lambda_TL * L_TL`` for every method, then evaluation.

Ciprijanovic et al. (2020), Eq. 1: the total loss is the source cross-entropy ``L_CL`` plus
the transfer loss ``L_TL`` (none, MMD or adversarial) weighted by ``lambda_TL``. One step
takes one source batch (with labels) and one target batch (images only: target labels are
never read during training, early stopping or model selection). Adam with a one-cycle
learning-rate schedule; the returned weights are those of the epoch the stopping rule
(``config.stopping``, :func:`fit`) picks on the *source* validation loss.

``run_trial`` never raises for a failed trial: a non-finite loss, running out of memory or
any other exception ends as ``status: "failed"`` with its typed reason
(:class:`training.record.Failure`), the error and the traceback in the record. Bad input data
(``galaxies.validate.InvalidDatasetError``) is not a trial failure and is raised.

Whether a step draws a target batch, and which transfer loss it adds, come from the method's
spec (:mod:`training.registry`); the network from the backbone's spec.

The path of one trial, top to bottom (:func:`run_trial`): build the trainer
(:class:`training.trainer.Trainer`), continue from ``out_dir/resume.pt`` when its fingerprint
matches (:mod:`training.resume`), :func:`fit` epoch by epoch (a ``resume.pt`` after each),
score the returned weights and write the trial's files (:func:`training.scoring.score_and_write`),
then ``record.json``.

Preemption: a trial started again in the same folder (a resumed search, a requeued job,
``train.py`` with the same ``--out``) continues from the epoch after the last one
checkpointed when the file's fingerprint matches its configuration, problem, data (also
compared by ``galaxies.pairs.same_data``), device type and torch version; a file that does
not match, or cannot be read, is ignored with a :class:`training.resume.ResumeWarning` and
the trial starts afresh (overwriting it). On the
CPU, at equal thread counts, the resumed trial's record equals an uninterrupted run's
(losses, metrics, best epoch, diagnostics, weights; ``tests/test_trial_resume.py``).
``resume.pt`` is removed once ``record.json`` is written.
"""

from __future__ import annotations

import copy
import os
import platform
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from galaxies.atomic import atomic_path
from galaxies.datasets import (
    load_benchmark,
)
from galaxies.validate import InvalidDatasetError
from training.compute_path import machine
from training.config import TrainConfig
from training.naming import problem_name
from training.record import (
    Failure,
    base_record,
    write_json,
)
from training.resume import (
    RESUME,
    ResumeWarning,
    remove_resume,
    resume_fingerprint,
    resume_payload,
    usable_resume,
)
from training.scoring import interim_record, score_and_write
from training.trainer import Trainer, TrialFailedError, resolve_device

#: ``on_epoch(epoch, interim) -> stop?``: called after every epoch;
#: ``interim(diagnostics, predictions=False)`` evaluates the current weights on the validation
#: splits, computing only the named diagnostics (``None``: all) and, with ``predictions``, the
#: per-image predictions too (see :func:`interim_record`). A callback with
#: ``state_dict()`` and ``load_state_dict(state)`` methods (e.g. a search's epoch reporter) has
#: its state saved in ``resume.pt`` and given back when the trial resumes.
EpochCallback = Callable[[int, Callable[..., dict[str, Any]]], bool]


@dataclass
class FitState:
    """Where :func:`fit` stands after an epoch: early stopping and whether training is over.

    Attributes:
        epoch: the last completed epoch (0: none yet).
        best_loss: the lowest source validation loss so far.
        best_epoch: its epoch (0: none yet).
        best_state: the network's state dict at ``best_epoch`` (``None``: none yet).
        waited: epochs since the last improvement (early stopping's patience counter).
        done: training is over after ``epoch`` (last epoch, patience spent, or ``stopped``).
        stopped: ``on_epoch`` ended the run before the last epoch.
        peak_lr: the highest learning rate at the end of an epoch so far.
    """

    epoch: int = 0
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    waited: int = 0
    done: bool = False
    stopped: bool = False
    peak_lr: float = 0.0


def fit(trainer: Trainer, history: list[dict[str, Any]], progress: bool,
        on_epoch: EpochCallback | None = None, state: FitState | None = None,
        checkpoint: Callable[[FitState], None] | None = None) -> tuple[int, bool]:
    """Train; return the weights of the epoch that ``config.stopping`` picks.

    The rules (``training.config.STOPPING_RULES``), all on the *source* validation loss, never
    on target labels:

    - ``best``: train the whole one-cycle schedule; restore the epoch of the lowest loss.
    - ``best_after_peak``: the whole schedule; the lowest loss among the epochs after the
      learning-rate peak (an epoch whose end-of-epoch lr is below the highest one before it);
      the last epoch when none is (a run a stopper ended before the peak).
    - ``last``: the whole schedule; the final, annealed weights.
    - ``patience``: early stopping (Ciprijanovic et al. 2020): end after ``config.patience``
      epochs without a lower loss; restore the best epoch. It can end a run in the
      high-learning-rate phase (``benchmarks/stopping_study.py`` measures how often).

    Appends one row per epoch to ``history`` (so a failed trial keeps its curves). After each
    epoch ``on_epoch`` (a search's stopper) may end the run before the last epoch, then
    ``checkpoint(state)`` is called (``run_trial`` writes ``resume.pt`` there).

    Args:
        trainer: the run's state.
        history: the rows of the epochs done so far (appended to).
        progress: show a progress bar over epochs.
        on_epoch: see :data:`EpochCallback`.
        state: continue after ``state.epoch`` (a resumed trial; ``trainer`` and ``history``
            restored to the same epoch); default: from the first epoch.
        checkpoint: called after every epoch with the updated state.

    Returns:
        ``(best epoch, stopped)``: ``stopped`` is True when ``on_epoch`` ended the run before
        ``config.epochs``.
    """
    config = trainer.config
    state = state if state is not None else FitState()
    epochs = range(state.epoch + 1, config.epochs + 1) if not state.done else range(0)
    bar = tqdm(epochs, desc="epochs", unit="epoch", disable=not progress,
               initial=state.epoch, total=config.epochs)
    for epoch in bar:
        tick = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch, **trainer.train_epoch(epoch)}
        source_val = trainer.source_val(keep_features=on_epoch is not None)
        labels = trainer.data[(trainer.train_domain, "val")][1].numpy().astype(bool)
        row["source_val_loss"] = source_val.loss
        row["source_val_accuracy"] = float(((source_val.prob_merger >= 0.5) == labels).mean())
        row["lr"] = trainer.optimizer.param_groups[0]["lr"]
        row["epoch_time_s"] = time.perf_counter() - tick
        history.append(row)
        bar.set_postfix(
            loss=f"{row['train_loss']:.3f}", val_acc=f"{row['source_val_accuracy']:.3f}"
        )
        rule = config.stopping
        eligible = rule != "best_after_peak" or row["lr"] < state.peak_lr
        state.peak_lr = max(state.peak_lr, row["lr"])
        if rule == "last":  # the current weights are the ones returned
            state.best_loss, state.best_epoch = row["source_val_loss"], epoch
            state.best_state = None
        elif eligible and row["source_val_loss"] < state.best_loss:
            state.best_loss, state.best_epoch, state.waited = row["source_val_loss"], epoch, 0
            state.best_state = copy.deepcopy(trainer.model.state_dict())
        else:
            state.waited += 1
        if on_epoch is not None and on_epoch(
                epoch, lambda diagnostics=None, predictions=False, scored=source_val:
                    interim_record(trainer, diagnostics, scored, predictions)):
            state.stopped = epoch < config.epochs
        state.epoch = epoch
        out_of_patience = rule == "patience" and state.waited >= config.patience
        state.done = state.stopped or out_of_patience or epoch == config.epochs
        if checkpoint is not None:
            checkpoint(state)
        if state.done:
            break
    if state.best_state is not None:
        trainer.model.load_state_dict(state.best_state)
    elif state.best_epoch == 0:  # no epoch was eligible (stopped before the peak)
        state.best_epoch = state.epoch
    return state.best_epoch, state.stopped



def fit_values(state: FitState) -> dict[str, Any]:
    """``state`` as plain values for ``resume.pt``.

    The best weights become ``"model"`` when they are the current epoch's own, so they are not
    stored twice.
    """
    values = {name: getattr(state, name) for name in FitState.__dataclass_fields__}
    if state.best_state is not None and state.best_epoch == state.epoch:
        values["best_state"] = "model"
    return values


def run_trial(
    config: TrainConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    problem: str | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Train and evaluate one configuration; write ``out_dir/record.json`` and return it.

    After every epoch the trial's state is written to ``out_dir/resume.pt`` (atomically); a
    trial started again in the same folder continues from it (see the module docstring). The
    record of a resumed trial has ``resumed``: one ``{"from_epoch", "host", "at", "before"}``
    per resume (``before``: the ``machine`` and ``compute_path`` of the attempt that ran up to
    ``from_epoch``, ``None`` where its ``resume.pt`` predates them, absent from entries an
    older version wrote; the record's own ``machine`` and ``compute_path`` are its last
    attempt's); its ``wall_time_s`` adds the time of every attempt up to its last checkpoint.

    Args:
        config: every hyperparameter of the trial.
        data_dir: folder with ``source.h5`` and ``target.h5``.
        out_dir: the trial's folder (``record.json``, ``roc.json``, ``predictions.npz``,
            ``checkpoint.pt``; ``resume.pt`` while it runs).
        problem: the problem name recorded with the trial (default: the config's
            ``<method>_<backbone>``).
        progress: show a progress bar over epochs.
        on_epoch: called after every epoch (see :data:`EpochCallback`); when it ends the run
            early the record's status is ``"stopped"`` (metrics of the best weights so far).
        resume: continue from a matching ``out_dir/resume.pt`` (False: start afresh and
            overwrite it).

    Returns:
        The trial record (see ``docs/CONTRACTS.md``).

    Raises:
        InvalidDatasetError: the data files are missing or do not follow the schema.
    """
    start = time.perf_counter()
    bench = load_benchmark(data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    problem = problem or problem_name(config.method, config.backbone)
    record = base_record(config, problem, bench, str(device))
    elapsed_before = 0.0
    try:
        trainer = Trainer(config, bench, device)
        record["compute_path"], record["machine"] = trainer.path.to_dict(), machine(device)
        fingerprint = resume_fingerprint(trainer, problem, record)
        identity = record["data"]["identity"]
        previous = usable_resume(out_dir, fingerprint, identity) if resume else None
        state, resumed = None, []
        if previous is not None:
            try:
                trainer.load_state_dict(previous["trainer"])
                if previous.get("on_epoch") is not None and hasattr(on_epoch, "load_state_dict"):
                    on_epoch.load_state_dict(previous["on_epoch"])
            except Exception as exc:  # noqa: BLE001 - fall back to a fresh start
                warnings.warn(f"{out_dir / RESUME} cannot be continued ({type(exc).__name__}: "
                              f"{exc}); the trial starts from epoch 1", ResumeWarning,
                              stacklevel=2)
                trainer = Trainer(config, bench, device)
            else:
                state = FitState(**previous["fit"])
                if isinstance(state.best_state, str):  # "model": the epoch's own weights
                    state.best_state = copy.deepcopy(trainer.model.state_dict())
                record["history"] = list(previous["history"])
                elapsed_before = float(previous["elapsed_s"])
                resumed = [*previous["resumed"], {
                    "from_epoch": state.epoch, "host": platform.node(),
                    "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    # the attempt that ran up to from_epoch (None: written before they were kept)
                    "before": {"machine": previous.get("machine"),
                               "compute_path": previous.get("compute_path")}}]
                record["resumed"] = resumed
                if progress:
                    print(f"{out_dir}: resuming after epoch {state.epoch} ({RESUME})",
                          flush=True)
        bench = previous = None  # the trainer holds normalised copies: free the rest

        def checkpoint(fit_state: FitState) -> None:
            payload = resume_payload(trainer, fit_values(fit_state), record["history"],
                                     fingerprint,
                                     problem, elapsed_before + time.perf_counter() - start,
                                     resumed, on_epoch, identity, record["machine"])
            with atomic_path(out_dir / RESUME) as tmp:
                torch.save(payload, tmp)

        best_epoch, stopped = fit(trainer, record["history"], progress, on_epoch, state,
                                  checkpoint)
        record["best_epoch"], record["epochs_run"] = best_epoch, len(record["history"])
        score_and_write(trainer, record, out_dir, best_epoch)
        record["status"] = "stopped" if stopped else "ok"
    except InvalidDatasetError:
        raise
    except TrialFailedError as exc:
        record.update(status="failed", failure=str(exc.failure), error=str(exc))
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        record.update(status="failed", failure=str(Failure.OOM),
                      error=f"out of memory: {type(exc).__name__}: {exc}; lower batch_size",
                      traceback=traceback.format_exc())
    except Exception as exc:  # noqa: BLE001 - a trial's failure belongs in its record
        record.update(status="failed", failure=str(Failure.ERROR),
                      error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    record["wall_time_s"] = elapsed_before + time.perf_counter() - start
    write_json(out_dir / "record.json", record)
    remove_resume(out_dir)  # the record is complete: nothing to continue
    return record
