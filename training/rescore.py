"""Re-scoring a finished trial as a trial of another method that trains the same network.

AdaBN trains exactly as no-DA does (same seed, same weights): ``train.py --from-trial`` scores
the no-DA network with AdaBN's adapted BatchNorm statistics instead of training it again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from galaxies.datasets import (
    load_benchmark,
)
from galaxies.pairs import data_identity, same_data
from training.checkpoint import CHECKPOINT, CheckpointError, read_checkpoint
from training.config import TrainConfig
from training.naming import problem_name
from training.record import (
    base_record,
    recorded_identity,
    write_json,
)
from training.registry import get_method
from training.scoring import score_and_write
from training.trainer import Trainer, resolve_device


class ReevaluationError(ValueError):
    """A finished trial that cannot stand for another method's training (exit status 2)."""


def reevaluate_trial(config: TrainConfig, trained_dir: str | os.PathLike,
                     data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                     problem: str | None = None) -> dict[str, Any]:
    """Score a finished trial's network as a trial of ``config`` (AdaBN from a no-DA trial).

    Allowed only when ``config`` would train *exactly* the same network: the two
    configurations differ in ``method`` alone, neither method draws target batches and both
    have ``lambda_tl == 0`` (training is then the same deterministic source-only run; same
    seed, same weights, ``tests/test_controls.py``). The new record keeps the trained
    history and best epoch, records ``reevaluated_from``, and is scored by ``config.method``
    (e.g. AdaBN's adapted BatchNorm statistics on the target splits).

    Raises:
        ReevaluationError: the trial is not ``ok``, has no checkpoint, was trained on other
            data (``galaxies.pairs.same_data`` of its record's ``data.identity``, or of its
            attributes for a record older than the identity), or its configuration would not
            train the same network.
        InvalidDatasetError: the data files are missing or invalid.
    """
    start = time.perf_counter()
    trained_dir, out_dir = Path(trained_dir), Path(out_dir)
    from training.record import portable_path, read_record

    trained = read_record(trained_dir)
    if trained is None or trained.get("status") != "ok":
        raise ReevaluationError(f"{trained_dir}: no ok record.json. Fix: pass a finished trial")
    if not (trained_dir / CHECKPOINT).is_file():
        raise ReevaluationError(f"{trained_dir}/{CHECKPOINT} is missing. Fix: rerun the trial")
    theirs = TrainConfig.from_dict(trained["config"])
    same = {k: v for k, v in theirs.to_dict().items() if k != "method"}
    mine = {k: v for k, v in config.to_dict().items() if k != "method"}
    specs = (get_method(theirs.method), get_method(config.method))
    if (same != mine or any(s.needs_target for s in specs) or config.lambda_tl != 0
            or specs[0].trains_on != specs[1].trains_on):
        differ = sorted(k for k in mine if mine[k] != same.get(k))
        if specs[0].trains_on != specs[1].trains_on:  # e.g. a no-DA network filed as an oracle
            differ.append(f"trains_on {specs[0].trains_on} vs {specs[1].trains_on}")
        raise ReevaluationError(
            f"{trained_dir} ({theirs.method}) does not train the network {config.method} "
            f"would (what differs: {differ or 'none'}; both methods must be source-only "
            "with lambda_tl = 0 and learn from the same labelled split). Fix: train this "
            "configuration instead")
    bench = load_benchmark(data_dir)
    why = same_data(recorded_identity(trained), data_identity(data_dir))
    if why:
        raise ReevaluationError(f"{trained_dir} was trained on other data than {data_dir} "
                                f"({why}). Fix: pass the trial's own data folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    problem = problem or problem_name(config.method, config.backbone)
    record = base_record(config, problem, bench, str(device))
    trainer = Trainer(config, bench, device)
    bench = None
    try:
        state = read_checkpoint(trained_dir / CHECKPOINT, device)
        trainer.model.load_state_dict(state["model"])
    except (CheckpointError, RuntimeError) as exc:
        raise ReevaluationError(f"{exc}".splitlines()[0]) from None
    record["history"] = trained["history"]
    record["best_epoch"], record["epochs_run"] = trained["best_epoch"], trained["epochs_run"]
    record["reevaluated_from"] = portable_path(trained_dir)
    score_and_write(trainer, record, out_dir, trained["best_epoch"])
    record["status"] = "ok"
    record["wall_time_s"] = time.perf_counter() - start
    write_json(out_dir / "record.json", record)
    return record


