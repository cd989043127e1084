"""Tables and figures of searches and seed studies: ``python analysis/report.py``.

Example::

    python analysis/report.py --runs runs/search runs/seeds --out reports/latest

Each ``--runs`` folder is a search log folder (``results.csv``), a seed study (``seeds.json``)
or any parent of some. Writes into ``--out``:

- ``report.md``: Table 1, links to everything below, the runs read, failed-trial counts;
- ``table1.{csv,md}`` (+ ``table1_values.csv``): the paper's Table 1 (accuracy, %);
- ``metrics.{csv,md}`` (+ ``metrics_values.csv``): all six metrics per problem and domain;
- ``completeness.{csv,md}`` (+ ``completeness_values.csv``): Figure 1's companion table,
  completeness (merger recall) and purity (merger precision) of every selected model with its
  confusion matrix (TP, FN, FP, TN) per domain;
- ``best_configs.{csv,md}``: the selected configuration of each problem;
- ``seeds.{csv,md}`` (+ ``seeds_values.csv``): mean ± std of every seed study;
- ``trials.csv``: every trial read (:mod:`search.results`);
- ``figures/figure1_<backbone>.{png,pdf}``, ``figures/progress_<problem>.{png,pdf}``,
  ``figures/seeds.{png,pdf}``;
- with ``--diagnostics`` (off by default: it loads every selected trial's checkpoint and runs
  it on the test images, :mod:`analysis.diagnostics`): ``figures/latent_<backbone>``,
  ``figures/gradcam_<backbone>`` and ``figures/reliability_<backbone>`` (``.png``, ``.pdf``);
  selected trials without a checkpoint or whose data folder is missing are left out with a
  one-line warning on stderr.

Problems without results appear as ``—``. Paths in the report are relative to the repository
(absolute only for runs outside it), so a committed report holds no machine's paths.
File names built from records (the ``problem`` of a search) are sanitised
(:func:`safe_name`: only ``[A-Za-z0-9._-]``, no ``..``), and every path is checked to lie
inside ``--out`` before anything is written (:func:`inside`). Every file is written
atomically (temporary file, then rename).
Exit status 0, or 2 when a ``--runs`` folder does not exist or holds no search and no seed
study, or ``--out`` cannot be written (one line ``error: cannot write <path>: <reason>``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import figures, tables
from galaxies.atomic import check_writable, write_error_message
from search.results import discover, load_runs, load_search
from search.selection import DEFAULT_STRATEGY, STRATEGIES, get_strategy
from training.record import portable_path, resolve_path, write_text


@dataclass
class Report:
    """What :func:`build_report` wrote.

    Attributes:
        out: the output folder.
        frame: every trial read.
        tables: name -> formatted table.
        files: every file written.
        markdown: the text of ``report.md``.
    """

    out: Path
    frame: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    markdown: str = ""


PATH_COLUMNS = ("run_dir", "trial_dir", "data_dir")


def portable_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose path columns are relative to the repository (absolute outside it)."""
    frame = frame.copy()
    for column in PATH_COLUMNS:
        if column in frame:
            frame[column] = [portable_path(resolve_path(p)) if isinstance(p, str) and p else p
                             for p in frame[column]]
    return frame


def safe_name(text: str, limit: int = 100) -> str:
    """``text`` as one file-name component: only ``[A-Za-z0-9._-]``, no ``..``, not hidden.

    ``"x/../../pwn"`` -> ``"x_._._pwn"``; an empty result is ``"unnamed"``.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(text))
    name = re.sub(r"\.{2,}", ".", name).lstrip(".-")[:limit]
    return name or "unnamed"


def inside(out: Path, path: Path) -> Path:
    """``path``, checked to resolve inside the folder ``out``.

    Raises:
        ValueError: ``path`` would be written outside ``out``.
    """
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(out).resolve()):
        raise ValueError(f"refusing to write {path}: outside --out {out}")
    return path


def _rel(path: Path, out: Path) -> str:
    return os.path.relpath(path, out)


def build_report(runs: Iterable[str | os.PathLike], out: str | os.PathLike,
                 strategy: str = DEFAULT_STRATEGY, diagnostics: bool = False) -> Report:
    """Read every run under ``runs``; write the tables, figures and ``report.md`` into ``out``.

    With ``diagnostics``, also the latent-space, Grad-CAM and reliability figures of
    :func:`analysis.diagnostics.diagnostics_figures` (they apply the trained networks; each
    skipped trial emits a :class:`analysis.diagnostics.DiagnosticsWarning`).

    Raises:
        FileNotFoundError: a folder does not exist, or none holds a search or seed study.
    """
    runs = [Path(r) for r in runs]
    found = discover(runs)
    if not found.searches and not found.seed_studies:
        raise FileNotFoundError(f"no search log folder (results.csv) or seed study (seeds.json) "
                                f"under {', '.join(map(str, runs))}")
    strategy_obj = get_strategy(strategy)
    out = Path(out).resolve()
    fig_dir = out / "figures"
    frame = load_runs(runs)
    report = Report(out, frame)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "trials.csv", portable_frame(frame).to_csv(index=False))
    report.files.append(out / "trials.csv")

    report.tables["table1"] = tables.table1(frame, strategy_obj)
    report.files += tables.write_table(report.tables["table1"], out / "table1", index=True,
                                       values=tables.table1_values(frame, strategy_obj))
    report.tables["metrics"] = tables.metrics_table(frame, strategy_obj)
    report.files += tables.write_table(report.tables["metrics"], out / "metrics",
                                       values=tables.metric_values(frame, strategy_obj))
    report.tables["completeness"] = tables.completeness_table(frame, strategy_obj)
    report.files += tables.write_table(report.tables["completeness"], out / "completeness",
                                       values=tables.completeness_values(frame, strategy_obj))
    best = tables.best_configs(frame, strategy_obj)
    report.tables["best_configs"] = best
    write_text(out / "best_configs.csv", portable_frame(best).to_csv(index=False))
    write_text(out / "best_configs.md", tables.to_markdown(
        portable_frame(best).set_index("problem").T.rename_axis("field"), index=True))
    report.files += [out / "best_configs.csv", out / "best_configs.md"]
    if found.seed_studies:
        report.tables["seeds"] = tables.seed_summary(frame)
        report.files += tables.write_table(report.tables["seeds"], out / "seeds",
                                           values=tables.seed_stats(frame))

    figure_links = []
    for backbone, label in tables.backbone_labels().items():
        if (best.loc[best["backbone"] == backbone, "status"] == "ok").any():
            paths = figures.save_figure(figures.figure1(frame, backbone, strategy_obj),
                                        inside(out, fig_dir / f"figure1_{safe_name(backbone)}"))
            report.files += paths
            figure_links.append((f"Figure 1, {label}", paths[0]))
    names: dict[str, int] = {}
    for log_dir in found.searches:
        search = load_search(log_dir)
        problem = str(search["problem"].dropna().iloc[0]) if len(search) else log_dir.name
        names[problem] = names.get(problem, 0) + 1
        stem = f"progress_{safe_name(problem)}" + (f"_{names[problem]}"
                                                   if names[problem] > 1 else "")
        paths = figures.save_figure(figures.progress_figure(search), inside(out, fig_dir / stem))
        report.files += paths
        figure_links.append((f"search progress, {problem} ({portable_path(log_dir)})",
                             paths[0]))
    if found.seed_studies:
        paths = figures.save_figure(figures.seeds_figure(frame), fig_dir / "seeds")
        report.files += paths
        figure_links.append(("seed studies", paths[0]))
    if diagnostics:  # imported here: the diagnostics load torch, a plain report never does
        from analysis import diagnostics as diagnostics_module

        paths = [inside(out, p)
                 for p in diagnostics_module.diagnostics_figures(frame, out, strategy_obj)]
        report.files += paths
        figure_links += [(diagnostics_module.figure_title(p), p) for p in paths
                         if p.suffix == ".png"]

    report.markdown = _markdown(report, found, strategy_obj.name, figure_links, names)
    write_text(out / "report.md", report.markdown)
    report.files.append(out / "report.md")
    return report


def _markdown(report: Report, found, strategy: str, figure_links, names) -> str:
    """The text of ``report.md``."""
    out, frame = report.out, report.frame
    lines = [
        "## Table 1: accuracy (%) on the test sets", "",
        f"Selected model per problem: the best search trial under `{strategy}`"
        + (" (ORACLE: uses target labels)" if STRATEGIES[strategy].oracle else "")
        + "; in parentheses the seed study's mean ± std (ddof=1) where one exists; "
        "— = no result.", "",
        tables.to_markdown(report.tables["table1"], index=True),
        "## Tables", "",
        "- [Table 1](table1.md) ([csv](table1.csv), [numbers](table1_values.csv))",
        "- [all metrics per problem and domain](metrics.md) ([csv](metrics.csv), "
        "[numbers](metrics_values.csv))",
        "- [completeness and purity with the confusion matrices](completeness.md) "
        "([csv](completeness.csv), [numbers](completeness_values.csv)): Figure 1's companion",
        "- [best configuration per problem](best_configs.md) ([csv](best_configs.csv))",
    ]
    if "seeds" in report.tables:
        lines.append("- [seed studies](seeds.md) ([csv](seeds.csv), [numbers](seeds_values.csv))")
    lines += ["- [every trial](trials.csv)", "", "## Figures", ""]
    lines += [f"- [{title}]({_rel(path, out)})" for title, path in figure_links]
    lines += ["", "## Runs read", ""]
    counts = frame.groupby(["run_dir", "status"]).size().unstack(fill_value=0)
    for run_dir in [*found.searches, *found.seed_studies]:
        row = counts.loc[str(run_dir)] if str(run_dir) in counts.index else pd.Series(dtype=int)
        summary = ", ".join(f"{int(n)} {status}" for status, n in row.items() if n) or "empty"
        lines.append(f"- `{portable_path(run_dir)}`: {summary}")
    repeated = [p for p, n in names.items() if n > 1]
    if repeated:
        lines += ["", f"Several searches of {', '.join(repeated)}: the selection takes the best "
                  "trial over all of them."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``analysis/report.py``."""
    parser = argparse.ArgumentParser(
        prog="analysis/report.py", description="Tables (Table 1, all metrics, best "
        "configurations, seed studies) and figures (Figure 1, search progress; with "
        "--diagnostics latent spaces, Grad-CAM and reliability) of searches and seed studies.")
    parser.add_argument("--runs", nargs="+", required=True, metavar="DIR",
                        help="search log folders, seed studies, or folders holding them")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--select", default=DEFAULT_STRATEGY, choices=list(STRATEGIES),
                        help="model-selection strategy (default: search = each search's own "
                        "objective; target_val_accuracy is an ORACLE)")
    parser.add_argument("--diagnostics", action="store_true",
                        help="also draw latent spaces (Isomap, t-SNE), Grad-CAM maps and "
                        "reliability diagrams of the selected models (loads their checkpoints "
                        "and runs them on the test images; slower)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``analysis/report.py``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    shown: tuple[type[Warning], ...] = ()  # warnings printed as one line each
    if args.diagnostics:  # imported here: the diagnostics load torch, a plain report never does
        from analysis.diagnostics import DiagnosticsWarning
        from training.denormals import flush_denormals

        flush_denormals()  # before torch's thread pool exists: every thread flushes
        shown = (DiagnosticsWarning,)
    with warnings.catch_warnings(record=True) as caught:
        for category in shown:
            warnings.simplefilter("always", category)
        try:
            out = Path(args.out)
            if out.is_dir() and any(out.iterdir()) and not (out / "report.md").is_file():
                shown = ", ".join(sorted(p.name for p in out.iterdir())[:3])
                parser.exit(2, f"error: {out} holds files that are not a report ({shown}). "
                            "Fix: choose an empty or new --out (a report folder is rewritten "
                            "in place)\n")
            check_writable(args.out)
            report = build_report(args.runs, args.out, args.select, args.diagnostics)
        except OSError as exc:  # a read-only or full --out: one line, no traceback
            message = write_error_message(exc, args.out)
            if message is None and not isinstance(exc, FileNotFoundError):
                raise
            parser.exit(2, f"error: {message or exc}\n")
    for warning in caught:
        if issubclass(warning.category, shown):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    print(tables.to_markdown(report.tables["table1"], index=True))
    print(f"report: {portable_path(report.out / 'report.md')} ({len(report.files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
