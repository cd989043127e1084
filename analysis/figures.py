"""Figures from the tidy trial frame (:mod:`search.results`), drawn with matplotlib's Agg canvas.

- :func:`figure1`: the paper's Figure 1 for one backbone — left, bars of accuracy, precision,
  recall, F1, Brier score and AUC on the test sets for every method with a result (labels
  and colours from the method specs), source
  hatched and target solid, each pair labelled ``target (source)``; right, ROC curves of the
  same models (from each trial's ``roc.json``), source dashed and target solid, AUC in the
  legend. The models are those of :func:`search.selection.selected_trials`.
- :func:`progress_figure`: a search's objective per trial with the best-so-far line.
- :func:`search_space_figure`: objective against each searched hyperparameter.
- :func:`seeds_figure`: test accuracy of every seed of every seed study, mean ± std.

Functions return a ``matplotlib.figure.Figure`` (no pyplot state; it displays in a notebook);
:func:`save_figure` writes PNG and PDF. Bar containers are labelled ``"<method> <domain>"``
(e.g. ``"mmd target"``) so that tests can read the drawn heights back.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from analysis.tables import METRIC_LABELS, backbone_labels, method_labels
from galaxies.atomic import atomic_path
from models.registry import UnknownNameError, get_backbone
from search.results import load_roc
from search.selection import DEFAULT_STRATEGY, Strategy, selected_trials
from training.metrics import METRIC_NAMES
from training.registry import method_specs

SOURCE_HATCH = "///"


def method_colors() -> dict[str, str]:
    """``{method: colour}`` of every registered method (from its spec)."""
    return {spec.name: spec.color for spec in method_specs()}


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """A figure on an Agg canvas (no global pyplot state)."""
    figure = Figure(figsize=(width, height), layout="constrained", **kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, out_base: str | os.PathLike) -> list[Path]:
    """Write ``<out_base>.png`` (150 dpi) and ``<out_base>.pdf`` atomically; returns both paths.

    The suffixes are appended (a base ``progress_a.b`` gives ``progress_a.b.png``); each file
    is written to a temporary file and renamed, so a full disk leaves no truncated figure.
    """
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_base.parent / f"{out_base.name}{suffix}" for suffix in (".png", ".pdf")]
    for path in paths:
        with atomic_path(path) as tmp:  # no creation date in the PDF: a rebuild is identical
            figure.savefig(tmp, dpi=150, format=path.suffix[1:],
                           metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    return paths


def _backbone(name: str) -> str:
    """``resnet`` (problem suffix) or ``resnet18`` -> ``resnet18``."""
    try:
        return get_backbone(name).name
    except UnknownNameError:
        return name


def _label(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "—"


def figure1(frame: pd.DataFrame, backbone: str,
            strategy: str | Strategy = DEFAULT_STRATEGY) -> Figure:
    """Figure 1 for ``backbone`` (``deepmerge`` | ``resnet18``/``resnet``): metric bars and ROC.

    Methods without a selected trial are left out and named in the title as missing.
    """
    backbone = _backbone(backbone)
    labels, colors = method_labels(), method_colors()
    selected = selected_trials(frame, strategy)
    selected = selected[selected["backbone"] == backbone].set_index("method")
    methods = [m for m in labels if m in selected.index]
    figure = new_figure(15, 5.2)
    bars, roc = figure.subplots(1, 2, width_ratios=[2.3, 1])
    width = 0.8 / (2 * max(len(methods), 1))
    x = np.arange(len(METRIC_NAMES))
    for j, method in enumerate(methods):
        trial, color = selected.loc[method], colors[method]
        values = {d: np.array([trial[f"{d}_test_{m}"] for m in METRIC_NAMES], dtype=float)
                  for d in ("source", "target")}
        left = x - 0.4 + 2 * j * width + width / 2
        bars.bar(left, values["source"], width, facecolor="white", edgecolor=color,
                 hatch=SOURCE_HATCH, linewidth=1.0, label=f"{method} source")
        bars.bar(left + width, values["target"], width, color=color, label=f"{method} target")
        for k in range(len(METRIC_NAMES)):
            top = np.nanmax([values["source"][k], values["target"][k], 0.0])
            bars.text(left[k] + width / 2, top + 0.02,
                      f"{_label(values['target'][k])} ({_label(values['source'][k])})",
                      rotation=90, ha="center", va="bottom", fontsize=7)
    bars.set_xticks(x, [METRIC_LABELS[m] for m in METRIC_NAMES])
    bars.set_xlim(-0.5, len(METRIC_NAMES) - 0.5)
    bars.set_ylim(0, 1.45)
    bars.set_yticks(np.linspace(0, 1, 6))
    bars.set_ylabel("test score")
    bars.grid(axis="y", alpha=0.3)
    handles = [Patch(color=colors[m], label=labels[m]) for m in methods]
    handles += [Patch(facecolor="white", edgecolor="0.3", hatch=SOURCE_HATCH, label="source"),
                Patch(color="0.3", label="target")]
    bars.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8,
                frameon=False)
    missing = [labels[m] for m in labels if m not in methods]
    if not methods:
        bars.text(0.5, 0.5, "no results", transform=bars.transAxes, ha="center", fontsize=14,
                  color="0.5")
    title = f"{backbone_labels().get(backbone, backbone)}: test metrics, labels target (source)"
    bars.set_title(title + (f"; missing: {', '.join(missing)}" if missing else ""), fontsize=10)
    _roc_panel(roc, selected, methods, labels, colors)
    return figure


def _roc_panel(ax, selected: pd.DataFrame, methods: list[str], labels: dict[str, str],
               colors: dict[str, str]) -> None:
    """ROC curves of the selected trials: source dashed, target solid, AUC in the legend."""
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
    for method in methods:
        trial = selected.loc[method]
        curves = load_roc(trial["trial_dir"])
        for domain, style in (("source", "--"), ("target", "-")):
            curve = curves.get(f"{domain}_test")
            if not curve:
                continue
            auc = trial[f"{domain}_test_auc"]
            ax.plot(curve["fpr"], curve["tpr"], linestyle=style, color=colors[method],
                    label=f"{labels[method]} {domain} (AUC {_label(auc)})")
    finish_roc_axes(ax, "ROC (test): source dashed, target solid")


def finish_roc_axes(ax, title: str) -> None:
    """Unit square, equal aspect, axis labels, ``title``, and a legend if anything is labelled."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7)


def progress_figure(frame: pd.DataFrame) -> Figure:
    """Objective of every trial of one search by job id, failed ones marked, best so far.

    The best-so-far line (over trials that ran to the end) is labelled ``"best so far"``;
    trials a stopper ended early are grey open circles at the objective it saw (fewer epochs);
    failed trials are red crosses on the lower edge.
    """
    trials = frame[frame["source"] == "search"].sort_values("job_id")
    ok = trials[trials["status"] == "ok"]
    stopped = trials[trials["status"] == "stopped"]
    failed = trials[~trials["status"].isin(["ok", "stopped"])]
    figure = new_figure(7, 4)
    ax = figure.subplots()
    if len(ok):
        ax.scatter(ok["job_id"].astype(float), ok["objective"], color="#4C72B0", zorder=3,
                   label=f"ok ({len(ok)})")
        ax.step(ok["job_id"].astype(float), ok["objective"].cummax(), where="post",
                color="#C44E52", label="best so far")
    if len(stopped) and "stopped_objective" in stopped:
        ax.scatter(stopped["job_id"].astype(float), stopped["stopped_objective"],
                   facecolors="none", edgecolors="#8C8C8C", zorder=2,
                   label=f"stopped early ({len(stopped)})")
    if len(failed):
        low = ok["objective"].min() if len(ok) else 0.0
        ax.scatter(failed["job_id"].astype(float), [low] * len(failed), marker="x",
                   color="red", zorder=3, label=f"failed ({len(failed)})")
    names = ", ".join(sorted(set(trials["problem"].dropna())))
    objective = ", ".join(sorted(set(trials["objective_name"].dropna()))) or "objective"
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (job id)")
    ax.set_ylabel(objective)
    ax.set_title(f"{names}: search progress", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def _is_log(values: pd.Series) -> bool:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > 100


def search_space_figure(frame: pd.DataFrame, hyperparameters: list[str],
                        log_scale: tuple[str, ...] | list[str] = ()) -> Figure:
    """Objective against each searched hyperparameter (``ok`` trials; best one starred).

    Args:
        frame: trials of one search.
        hyperparameters: names to plot (e.g. :func:`search.results.searched_hyperparameters`).
        log_scale: names drawn on a log axis (e.g. :func:`search.results.log_hyperparameters`);
            others too when their values span more than two decades.
    """
    ok = frame[(frame["source"] == "search") & (frame["status"] == "ok")]
    ncols = 3
    nrows = max(1, math.ceil(len(hyperparameters) / ncols))
    figure = new_figure(4 * ncols, 3 * nrows)
    axes = np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False)).ravel()
    best = ok.loc[ok["objective"].idxmax()] if len(ok) else None
    for ax, name in zip(axes, hyperparameters, strict=False):
        values = ok[f"p:{name}"]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            x, best_x = numeric, (float(best[f"p:{name}"]) if best is not None else None)
            if name in log_scale or _is_log(numeric):
                ax.set_xscale("log")
        else:
            levels = sorted(values.astype(str).unique())
            x = values.astype(str).map({v: i for i, v in enumerate(levels)})
            best_x = levels.index(str(best[f"p:{name}"])) if best is not None else None
            ax.set_xticks(range(len(levels)), levels)
        ax.scatter(x, ok["objective"], color="#4C72B0", alpha=0.8)
        if best is not None:
            ax.scatter([best_x], [best["objective"]], marker="*", s=160, color="#C44E52",
                       zorder=3)
        ax.set_xlabel(name)
        ax.set_ylabel("objective")
        ax.grid(alpha=0.3)
    for ax in axes[len(hyperparameters):]:
        ax.set_visible(False)
    figure.suptitle("objective vs hyperparameter (ok trials; star = best)", fontsize=10)
    return figure


def seeds_figure(frame: pd.DataFrame) -> Figure:
    """Test accuracy of every seed of every seed study, with mean ± std (``ddof=1``) bars.

    Source accuracies are hollow markers, target accuracies filled ones.
    """
    seeds = frame[(frame["source"] == "seeds") & (frame["status"] == "ok")]
    problems = sorted(seeds["problem"].unique())
    figure = new_figure(max(5, 1.6 * len(problems) + 2), 4)
    ax = figure.subplots()
    for i, problem in enumerate(problems):
        rows = seeds[seeds["problem"] == problem]
        color = method_colors().get(rows["method"].iloc[0], "0.3")
        for offset, domain, face in ((-0.15, "source", "white"), (0.15, "target", color)):
            values = rows[f"{domain}_test_accuracy"].to_numpy(dtype=float)
            ax.scatter(np.full(len(values), i + offset), values, facecolor=face, edgecolor=color,
                       zorder=3)
            if len(values) > 1:
                ax.errorbar(i + offset + 0.08, values.mean(), yerr=values.std(ddof=1),
                            color="0.2", capsize=3, marker="_")
    ax.set_xticks(range(len(problems)), problems)
    ax.set_xlim(-0.6, len(problems) - 0.4)
    ax.set_ylabel("test accuracy")
    ax.set_title("seed studies: source hollow, target filled; mean ± std", fontsize=10)
    ax.legend(handles=[Line2D([], [], marker="o", linestyle="", markerfacecolor="white",
                              markeredgecolor="0.3", label="source"),
                       Line2D([], [], marker="o", linestyle="", color="0.3", label="target")],
              fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return figure
