"""Tables from the tidy trial frame (:mod:`search.results`): Table 1, all metrics, best configs.

Every table covers every problem (``<method>_<backbone>``, in the paper's order); a problem
without results shows ``—`` (``MISSING``), never an error. Values on the *test* splits.

- :func:`table1`: the paper's Table 1 — one row per registered method (no-DA / MMD /
  adversarial / the controls joint-BN and AdaBN / …, labels from the method specs), plus the
  row of every registered baseline whose records are read (:func:`baseline_rows`; the
  CNN-free classical one),
  columns the registered backbones
  (DeepMerge, ResNet18) × source and target; accuracy in percent of the selected model (the
  best search trial under the selection strategy, i.e. seed 1 unless the search set another
  seed; the seed study's lowest seed when there is no search), then, where a seed study exists, its
  mean ± sample standard deviation (``ddof=1``) over the ``ok`` seeds: ``"83.1 (82.4 ± 1.1)"``.
- :func:`metrics_table`: accuracy, precision, recall, F1, Brier score and AUC per problem and
  domain, formatted the same way (fractions, 3 decimals).
- :func:`best_configs`: the selected configuration of each problem.
- :func:`seed_stats`: mean, std, n of every metric of every seed study.
- :func:`completeness_table`: Figure 1's companion table, completeness (merger recall) and
  purity (merger precision) with the confusion matrix (TP, FN, FP, TN) per model and domain.

The ``*_values`` functions give the numbers behind the formatted tables (for CSV files).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from models.registry import backbone_specs
from search.results import METRIC_COLUMNS
from search.selection import DEFAULT_STRATEGY, Strategy, selected_trials
from training.metrics import METRIC_NAMES
from training.naming import problem_names, split_problem_name
from training.record import write_text
from training.registry import baseline_specs, method_specs

MISSING = "—"
DOMAINS = ("source", "target")
METRIC_LABELS = {"accuracy": "accuracy", "precision": "precision", "recall": "recall",
                 "f1": "F1", "brier": "Brier", "auc": "AUC"}


def method_labels() -> dict[str, str]:
    """``{method: label}`` of every registered method, in table order."""
    return {spec.name: spec.label for spec in method_specs()}


def backbone_labels() -> dict[str, str]:
    """``{backbone: label}`` of every registered backbone, in table order."""
    return {spec.name: spec.label for spec in backbone_specs()}


def problem_grid() -> pd.DataFrame:
    """Every problem with its method and backbone, in the paper's order (backbone, method)."""
    rows = [(name, *split_problem_name(name)) for name in problem_names()]
    return pd.DataFrame(rows, columns=["problem", "method", "backbone"])


def seed_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (``ddof=1``) and counts of every test metric of every seed study.

    Returns:
        One row per (problem, domain, metric): ``mean``, ``std``, ``n_ok`` (seeds whose record
        is ok), ``n_runs`` (seed folders found), plus method and backbone.
    """
    seeds = frame[frame["source"] == "seeds"]
    rows = []
    for problem, group in seeds.groupby("problem", sort=True):
        ok = group[group["status"] == "ok"]
        for domain in DOMAINS:
            for metric in METRIC_NAMES:
                values = ok[f"{domain}_test_{metric}"].dropna().to_numpy(dtype=float)
                rows.append({"problem": problem, "method": group["method"].iloc[0],
                             "backbone": group["backbone"].iloc[0], "domain": domain,
                             "metric": metric, "n_ok": len(values), "n_runs": len(group),
                             "mean": values.mean() if len(values) else math.nan,
                             "std": values.std(ddof=1) if len(values) > 1 else math.nan})
    columns = ["problem", "method", "backbone", "domain", "metric", "mean", "std", "n_ok",
               "n_runs"]
    return pd.DataFrame(rows, columns=columns)


def _status(frame: pd.DataFrame, problem: str, selected: pd.DataFrame) -> str:
    if problem in set(selected["problem"]):
        return "ok"
    return "failed" if (frame["problem"] == problem).any() else "missing"


def metric_values(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY,
                  metrics: tuple[str, ...] = METRIC_NAMES) -> pd.DataFrame:
    """Numbers behind :func:`table1` and :func:`metrics_table`.

    Returns:
        One row per problem × domain × metric: ``value`` of the selected model,
        ``selected_from``, ``job_id``, ``seed``, ``status`` (ok | failed | missing) and the
        seed study's ``mean``, ``std``, ``n_ok``, ``n_runs``.
    """
    selected = selected_trials(frame, strategy).set_index("problem")
    stats = seed_stats(frame).set_index(["problem", "domain", "metric"])
    rows = []
    for _, spec in problem_grid().iterrows():
        status = _status(frame, spec["problem"], selected.reset_index())
        chosen = selected.loc[spec["problem"]] if status == "ok" else None
        for domain in DOMAINS:
            for metric in metrics:
                key = (spec["problem"], domain, metric)
                stat = stats.loc[key] if key in stats.index else None
                rows.append({
                    **spec.to_dict(), "domain": domain, "metric": metric, "status": status,
                    "value": chosen[f"{domain}_test_{metric}"] if chosen is not None else math.nan,
                    "selected_from": chosen["selected_from"] if chosen is not None else None,
                    "job_id": chosen["job_id"] if chosen is not None else pd.NA,
                    "seed": chosen["seed"] if chosen is not None else pd.NA,
                    "mean": stat["mean"] if stat is not None else math.nan,
                    "std": stat["std"] if stat is not None else math.nan,
                    "n_ok": int(stat["n_ok"]) if stat is not None else 0,
                    "n_runs": int(stat["n_runs"]) if stat is not None else 0,
                })
    return pd.DataFrame(rows)


def format_cell(value: float, mean: float, std: float, n_ok: int, n_runs: int,
                scale: float = 1.0, digits: int = 3) -> str:
    """``"v (mean ± std)"``; ``—`` for what is missing; notes seeds that did not finish ok."""

    def num(x: float) -> str:
        return f"{x * scale:.{digits}f}"

    main = num(value) if _finite(value) else MISSING
    if n_runs == 0:
        return main
    if n_ok == 0:
        spread = "no seed ok"
    elif n_ok == 1:
        spread = f"{num(mean)}, 1 seed"
    else:
        spread = f"{num(mean)} ± {num(std)}"
    if 0 < n_ok < n_runs:
        spread += f"; {n_ok}/{n_runs} seeds ok"
    return f"{main} ({spread})"


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _cell(row: pd.Series, scale: float, digits: int) -> str:
    return format_cell(row["value"], row["mean"], row["std"], row["n_ok"], row["n_runs"],
                       scale, digits)


def table1_values(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY
                  ) -> pd.DataFrame:
    """The numbers of Table 1 (accuracy rows of :func:`metric_values`)."""
    return metric_values(frame, strategy, metrics=("accuracy",))


def table1(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY) -> pd.DataFrame:
    """Table 1 of the paper: accuracy (%) of no-DA / MMD / adversarial on source and target.

    Returns:
        One row per registered method (``no-DA``, ``MMD``, ``adversarial``, …); columns a
        MultiIndex (``DeepMerge`` | ``ResNet18`` | …, ``source`` | ``target``); cells like
        ``"83.1 (82.4 ± 1.1)"`` or ``—``.
    """
    rows, cols = method_labels(), backbone_labels()
    values = table1_values(frame, strategy)
    values["cell"] = values.apply(_cell, axis=1, scale=100.0, digits=1)
    values["row"] = values["method"].map(rows)
    values["col"] = values["backbone"].map(cols)
    table = values.pivot(index="row", columns=["col", "domain"], values="cell")
    columns = pd.MultiIndex.from_product([list(cols.values()), DOMAINS])
    table = table.reindex(index=list(rows.values()), columns=columns)
    for label, cells in baseline_rows(frame, strategy).items():
        table.loc[label] = [cells[domain] for _, domain in columns]
    table.index.name = "method"
    table.columns.names = [None, None]
    return table.fillna(MISSING)


def baseline_rows(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY
                  ) -> dict[str, dict[str, str]]:
    """Table 1 rows of the registered baselines found in ``frame``: ``{label: {domain: cell}}``.

    A baseline (:class:`training.registry.BaselineSpec`; the classical one, problem
    ``classical_gbt``) has no backbone of the table: its one cell per domain is shown under
    every backbone, the row to beat for each. Baselines without results are left out (they
    are not registered problems). Rows in registry order, labelled by the specs.
    """
    rows = {}
    for spec in baseline_specs():
        trials = frame[frame["problem"] == spec.problem]
        if trials.empty:
            continue
        selected = selected_trials(trials, strategy)
        stats = seed_stats(trials).set_index(["domain", "metric"])
        cells = {}
        for domain in DOMAINS:
            value = (selected[f"{domain}_test_accuracy"].iloc[0] if len(selected)
                     else math.nan)
            stat = stats.loc[(domain, "accuracy")] if (domain, "accuracy") in stats.index \
                else None
            cells[domain] = format_cell(
                value, stat["mean"] if stat is not None else math.nan,
                stat["std"] if stat is not None else math.nan,
                int(stat["n_ok"]) if stat is not None else 0,
                int(stat["n_runs"]) if stat is not None else 0, scale=100.0, digits=1)
        rows[spec.label] = cells
    return rows


CONFUSION = ("TP", "FN", "FP", "TN")


def confusion_counts(trial_dir: str | os.PathLike, domain: str, split: str = "test",
                     threshold: float = 0.5) -> dict[str, int] | None:
    """Merger confusion matrix of one trial's split, from its ``predictions.npz``.

    ``TP`` = mergers predicted mergers (``p_merger >= threshold``), ``FN`` = mergers missed,
    ``FP`` = non-mergers predicted mergers, ``TN`` = the rest; ``None`` without predictions.
    """
    import numpy as np

    path = Path(trial_dir) / "predictions.npz"
    try:
        with np.load(path) as arrays:
            prob = arrays[f"{domain}_{split}_p_merger"]
            label = arrays[f"{domain}_{split}_label"].astype(bool)
    except (OSError, KeyError, ValueError):
        return None
    merger = prob >= threshold
    return {"TP": int((merger & label).sum()), "FN": int((~merger & label).sum()),
            "FP": int((merger & ~label).sum()), "TN": int((~merger & ~label).sum())}


def completeness_values(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY
                        ) -> pd.DataFrame:
    """Completeness, purity and confusion counts of every selected model (test splits).

    As merger studies report them: completeness = merger recall = TP / (TP + FN), purity =
    merger precision = TP / (TP + FP), at ``p_merger >= 0.5``. One row per problem with a
    result (the baselines included) × domain: the selected trial's ``completeness``,
    ``purity`` and ``TP``/``FN``/``FP``/``TN`` (from its ``predictions.npz``), and the seed
    study's ``completeness_mean``/``_std``, ``purity_mean``/``_std``, ``n_ok``, ``n_runs``.
    """
    selected = selected_trials(frame, strategy)
    stats = seed_stats(frame).set_index(["problem", "domain", "metric"])
    order = [*problem_grid()["problem"], *(spec.problem for spec in baseline_specs())]
    selected = selected.assign(_order=selected["problem"].map(
        {p: i for i, p in enumerate(order)})).sort_values("_order", na_position="last")
    rows = []
    for _, chosen in selected.iterrows():
        for domain in DOMAINS:
            counts = confusion_counts(chosen["trial_dir"], domain) or dict.fromkeys(
                CONFUSION, pd.NA)
            row = {"problem": chosen["problem"], "method": chosen["method"],
                   "backbone": chosen["backbone"], "domain": domain,
                   "selected_from": chosen["selected_from"], "seed": chosen["seed"],
                   "completeness": chosen[f"{domain}_test_recall"],
                   "purity": chosen[f"{domain}_test_precision"], **counts}
            for name, metric in (("completeness", "recall"), ("purity", "precision")):
                key = (chosen["problem"], domain, metric)
                stat = stats.loc[key] if key in stats.index else None
                row[f"{name}_mean"] = stat["mean"] if stat is not None else math.nan
                row[f"{name}_std"] = stat["std"] if stat is not None else math.nan
                row["n_ok"] = int(stat["n_ok"]) if stat is not None else 0
                row["n_runs"] = int(stat["n_runs"]) if stat is not None else 0
            rows.append(row)
    columns = ["problem", "method", "backbone", "domain", "selected_from", "seed",
               "completeness", "purity", *CONFUSION, "completeness_mean", "completeness_std",
               "purity_mean", "purity_std", "n_ok", "n_runs"]
    return pd.DataFrame(rows, columns=columns)


def completeness_table(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY
                       ) -> pd.DataFrame:
    """Figure 1's companion table: completeness and purity (%) and the confusion matrix.

    Rows (problem, domain) of every selected model; cells ``"v (mean ± std)"`` as in
    :func:`table1`; ``TP``/``FN``/``FP``/``TN`` of the selected trial.
    """
    values = completeness_values(frame, strategy)
    table = values[["problem", "domain"]].copy()
    for name in ("completeness", "purity"):
        table[f"{name} (%)"] = [
            format_cell(r[name], r[f"{name}_mean"], r[f"{name}_std"], r["n_ok"], r["n_runs"],
                        scale=100.0, digits=1) for _, r in values.iterrows()]
    for name in CONFUSION:
        table[name] = values[name]
    return table.reset_index(drop=True)


def metrics_table(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY
                  ) -> pd.DataFrame:
    """All six metrics per problem and domain (test splits), with seed mean ± std if any."""
    values = metric_values(frame, strategy)
    values["cell"] = values.apply(_cell, axis=1, scale=1.0, digits=3)
    table = values.pivot(index=["problem", "domain"], columns="metric", values="cell")
    order = pd.MultiIndex.from_product([problem_grid()["problem"], DOMAINS],
                                       names=["problem", "domain"])
    table = table.reindex(index=order, columns=list(METRIC_NAMES)).fillna(MISSING)
    table.columns = [METRIC_LABELS[m] for m in table.columns]
    return table.reset_index()


def best_configs(frame: pd.DataFrame, strategy: str | Strategy = DEFAULT_STRATEGY
                 ) -> pd.DataFrame:
    """The selected configuration of every problem (one row each; missing ones are empty).

    Columns: problem, method, backbone, status, selected_from, run_dir, job_id, seed,
    objective_name, score, n_trials and n_failed (search trials), source/target test
    accuracy, then every hyperparameter (``p:`` columns without the prefix).
    """
    selected = selected_trials(frame, strategy).set_index("problem")
    params = [c for c in frame.columns if c.startswith("p:")
              and c not in ("p:method", "p:backbone", "p:seed")]
    rows = []
    for _, spec in problem_grid().iterrows():
        trials = frame[(frame["problem"] == spec["problem"]) & (frame["source"] == "search")]
        row: dict[str, Any] = {**spec.to_dict(),
                               "status": _status(frame, spec["problem"], selected.reset_index()),
                               "n_trials": len(trials),
                               "n_failed": int((trials["status"] == "failed").sum())}
        if row["status"] == "ok":
            best = selected.loc[spec["problem"]]
            row.update({key: best[key] for key in (
                "selected_from", "run_dir", "job_id", "seed", "objective_name", "score",
                "source_test_accuracy", "target_test_accuracy")})
            row.update({c[2:]: best[c] for c in params})
        rows.append(row)
    return pd.DataFrame(rows)


def search_results(frame: pd.DataFrame, hyperparameters: list[str] | None = None
                   ) -> pd.DataFrame:
    """A search's trials, best objective first (failed ones last, with their error).

    Args:
        frame: trials of one search (:func:`search.results.load_search`).
        hyperparameters: the searched names to show (default every ``p:`` column that varies).
    """
    if hyperparameters is None:
        hyperparameters = [c[2:] for c in frame.columns if c.startswith("p:")
                           and frame[c].nunique(dropna=True) > 1]
    accuracy = [c for c in METRIC_COLUMNS if c.endswith("_accuracy")]
    columns = ["job_id", "status", "objective", *[f"p:{h}" for h in hyperparameters],
               *accuracy, "failure", "error"]
    table = frame.sort_values(["objective", "job_id"], ascending=[False, True],
                              na_position="last")[columns]
    return table.rename(columns=lambda c: c[2:] if c.startswith("p:") else c).reset_index(
        drop=True)


def failed_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials that failed or were interrupted: where they are, their status and error.

    Trials a search's stopper ended early (``stopped``) are not failures and are not listed.
    """
    columns = ["source", "problem", "job_id", "seed", "status", "failure", "error", "trial_dir"]
    bad = ~frame["status"].isin(["ok", "stopped"])
    return frame.loc[bad, columns].reset_index(drop=True)


def seed_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Seed studies at a glance: per problem, ``mean ± std (n_ok/n_runs)`` of each test metric.

    Rows are (problem, domain); columns the metric labels.
    """
    stats = seed_stats(frame)
    if stats.empty:
        return pd.DataFrame(columns=["problem", "domain", *METRIC_LABELS.values()])
    stats["cell"] = [
        f"{m:.3f} ± {s:.3f} ({k}/{n})" if _finite(s) else
        (f"{m:.3f} ({k}/{n})" if _finite(m) else f"{MISSING} ({k}/{n})")
        for m, s, k, n in zip(stats["mean"], stats["std"], stats["n_ok"], stats["n_runs"],
                              strict=True)]
    table = stats.pivot(index=["problem", "domain"], columns="metric", values="cell")
    table = table.reindex(columns=list(METRIC_NAMES))
    table.columns = [METRIC_LABELS[m] for m in table.columns]
    return table.reset_index()


def to_markdown(table: pd.DataFrame, index: bool = False, float_format: str = "{:.4g}") -> str:
    """A GitHub-flavoured Markdown table (no dependency on ``tabulate``).

    MultiIndex columns are joined with a space; missing values are written as ``—``.
    """
    if index:
        table = table.reset_index()
    headers = [" ".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c)
               for c in table.columns]

    def text(value: Any) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return MISSING
        if isinstance(value, float):
            return float_format.format(value)
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(text(v) for v in row) + " |"
              for row in table.itertuples(index=False, name=None)]
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, out_base: str | os.PathLike, index: bool = False,
                values: pd.DataFrame | None = None) -> list[Path]:
    """Write ``<out_base>.csv`` and ``<out_base>.md`` (and ``<out_base>_values.csv``).

    Each file is written atomically (temporary file, then rename): a full disk or a
    read-only folder raises ``OSError`` and leaves no truncated table.
    """
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    flat = table.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" ".join(map(str, c)) for c in flat.columns]
    paths = [out_base.parent / f"{out_base.name}{suffix}" for suffix in (".csv", ".md")]
    write_text(paths[0], flat.to_csv(index=index))
    write_text(paths[1], to_markdown(flat, index=index))
    if values is not None:
        paths.append(out_base.parent / f"{out_base.name}_values.csv")
        write_text(paths[-1], values.to_csv(index=False))
    return paths
