"""Model selection: which trial stands for each problem (DomainBed-style named strategies).

A strategy scores the ``ok`` trials of a search; the highest score wins, ties go to the
lowest ``job_id``. Registry ``STRATEGIES``:

- ``search`` (default): the objective the search itself maximised, as DeepHyper recorded it in
  ``results.csv`` (label-free unless the search was run with an oracle objective).
- every objective of :mod:`search.objectives` by name (``source_val_accuracy``,
  ``source_val_acc_minus_mmd`` and one per label-free diagnostic of
  :mod:`training.label_free` with a direction: ``neg_target_entropy``,
  ``neg_source_val_loss``, ``neg_feature_mmd``, ``im``, ``snd``, ``bnm``, ``neg_dev_risk``),
  recomputed from the trial records (a trial without the value is not selectable);
  ``target_val_accuracy`` is the ORACLE (uses target labels) and is flagged as such.

``STRATEGIES`` follows the registries: a diagnostic registered later is a strategy too.

The module is called ``selection`` rather than ``select``: a script run as
``python search/<name>.py`` puts this folder first on ``sys.path``, where a ``select.py``
would shadow the standard library's ``select`` (and break ``subprocess``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from search.objectives import ORACLES, LiveMapping, get_objective, objectives
from search.results import SPLITS, load_search
from training.label_free import diagnostic_names
from training.metrics import METRIC_NAMES
from training.record import read_record

DEFAULT_STRATEGY = "search"


class SelectionError(ValueError):
    """An unknown strategy, or a search without any successful trial."""


@dataclass(frozen=True)
class Strategy:
    """A named way to score trials (higher is better).

    Attributes:
        name: registry name.
        objective: objective of :mod:`search.objectives` to recompute, or ``None`` for the
            ``objective`` column of ``results.csv``.
        oracle: the score uses target labels (an upper bound, not a real selection).
    """

    name: str
    objective: str | None = None
    oracle: bool = False

    def score(self, frame: pd.DataFrame) -> pd.Series:
        """Score of every row; NaN where the trial cannot be selected."""
        if self.objective is None:
            return pd.to_numeric(frame["objective"], errors="coerce").astype(float)
        function = get_objective(self.objective)
        values = [_safe(function, row_record(row)) for _, row in frame.iterrows()]
        return pd.Series(values, index=frame.index, dtype=float)


def _safe(function: Any, record: dict[str, Any]) -> float:
    try:
        value = float(function(record))
    except (KeyError, TypeError, ValueError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


def row_record(row: pd.Series) -> dict[str, Any]:
    """The part of a trial record that objectives read, rebuilt from a frame row."""
    return {
        "status": row.get("status"),
        "metrics": {s: {m: row.get(f"{s}_{m}") for m in METRIC_NAMES} for s in SPLITS},
        "diagnostics": {key: row.get(key) for key in diagnostic_names()},
    }


def strategies() -> dict[str, Strategy]:
    """Every strategy by name: ``search`` first, then one per objective."""
    return {DEFAULT_STRATEGY: Strategy(DEFAULT_STRATEGY),
            **{name: Strategy(name, name, name in ORACLES) for name in objectives()}}


#: ``strategies()`` as a mapping that follows the registries.
STRATEGIES: Mapping[str, Strategy] = LiveMapping(strategies)


def get_strategy(name: str | Strategy) -> Strategy:
    """The strategy called ``name`` (a ``Strategy`` is returned as it is).

    Raises:
        SelectionError: unknown name (the message lists the valid ones).
    """
    if isinstance(name, Strategy):
        return name
    found = strategies()
    if name not in found:
        raise SelectionError(f"unknown selection strategy {name!r}; valid strategies: "
                             f"{', '.join(found)}")
    return found[name]


def rank_trials(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY) -> pd.DataFrame:
    """The ``ok`` search trials with a finite score, best first, with a ``score`` column."""
    strategy = get_strategy(strategy)
    trials = frame[(frame["source"] == "search") & (frame["status"] == "ok")].copy()
    trials["score"] = strategy.score(trials)
    trials = trials[trials["score"].notna()]
    return trials.sort_values(["score", "job_id"], ascending=[False, True], kind="stable")


def selected_trials(frame: pd.DataFrame,
                    strategy: str | Strategy = DEFAULT_STRATEGY) -> pd.DataFrame:
    """One row per problem: the trial that represents it in tables and figures.

    The best ``ok`` search trial under ``strategy``; for a problem without such a trial but
    with a seed study, the study's lowest ``ok`` seed. Column ``selected_from`` says which
    (``"search"`` or ``"seeds"``), ``score`` holds the strategy's score (NaN for seeds).
    """
    ranked = rank_trials(frame, strategy)
    best = ranked.groupby("problem", sort=False).head(1).assign(selected_from="search")
    seeds = frame[(frame["source"] == "seeds") & (frame["status"] == "ok")
                  & ~frame["problem"].isin(best["problem"])]
    seeds = seeds.sort_values("seed").groupby("problem", sort=False).head(1)
    seeds = seeds.assign(selected_from="seeds", score=float("nan"))
    out = pd.concat([best, seeds], ignore_index=True) if len(seeds) else best
    return out.sort_values("problem").reset_index(drop=True)


def best_configuration(log_dir: str | os.PathLike, strategy: str | Strategy = DEFAULT_STRATEGY
                       ) -> tuple[dict[str, Any], pd.Series]:
    """The full configuration of a search's best trial, and its frame row.

    The configuration is the trial record's own ``config`` (every ``TrainConfig`` field, so the
    search's fixed ``--set`` values such as ``epochs`` are kept).

    Raises:
        FileNotFoundError: ``log_dir`` holds no ``results.csv``.
        SelectionError: no ``ok`` trial with a finite score, or its record is unreadable.
    """
    log_dir = Path(log_dir)
    if not (log_dir / "results.csv").is_file():
        raise FileNotFoundError(f"{log_dir}: not a search log folder (no results.csv)")
    frame = load_search(log_dir)
    ranked = rank_trials(frame, strategy)
    if ranked.empty:
        counts = frame["status"].value_counts().to_dict()
        raise SelectionError(f"{log_dir}: no successful trial to select from ({len(frame)} "
                             f"trials: {counts})")
    row = ranked.iloc[0]
    record = read_record(row["trial_dir"])
    if record is None or not record.get("config"):
        raise SelectionError(f"{row['trial_dir']}/record.json: missing or without a config")
    return dict(record["config"]), row
