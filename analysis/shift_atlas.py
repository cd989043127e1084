r"""The shift atlas (issue 26): how much shift can domain adaptation take?

Usage::

    python analysis/shift_atlas.py                 # every stage, resuming finished work
    python analysis/shift_atlas.py --dry-run       # the commands, nothing run
    python analysis/shift_atlas.py --tables-only   # the table and figure from the records
    python analysis/shift_atlas.py --data-only     # the cells' data and shift statistics
    python analysis/shift_atlas.py --cells sb23 sb27 --deadline-min 120

The simulator controls the shift between the domains exactly, so the atlas measures each
method along two physical axes (:data:`CELLS`):

* **noise depth**: the target's limiting surface brightness SB_lim ∈ {23, 24, 25, 26, 27}
  mag/arcsec² at the source's PSF (shallower = more shift; 25 is the paper's pair);
* **seeing**: the target's PSF FWHM × {1.25, 1.5} at SB_lim = 25 (a survey with worse seeing
  than the simulation, ``galaxies/simulate.py --target-psf-scale``).

Stages (each the documented CLI as a subprocess; rerunning skips finished work):

1. **Data**: one pair per cell, data seed :data:`ATLAS_DATA_SEED` (held out: never read by a
   choice), a third of the paper's size (3000 mergers, 2700 non-mergers, 70/10/20). The same
   seed everywhere, so every cell has the same source images and the same galaxies in its
   target: the cells differ only by the shift. Their shift statistics
   (:func:`galaxies.shift_stats.summarize` of the source and of each target's test split) go
   to ``reports/atlas/cells.json``, the reference the shift meter (``apply/shift.py``) reads.
2. **Training**, in every cell, training seeds 1-3 (seed-major, so a stopped run leaves
   balanced cells): no-DA, joint-BN, MMD, DANN, the target-trained oracle (:data:`METHODS`)
   and the best newer method (:func:`newer_method`), each with the configuration its
   committed search on *development* data chose (``reports/paper/searches/<problem>/``;
   joint-BN and the oracle with the no-DA pick, ``search/seeds.py --shared-config``). The
   newer method is chosen on development data only: of CORAL, MMD+FE, DANN+FE, CDAN and SIDDA,
   the one whose search's label-free pick has the highest target *validation* accuracy on
   development data seed 2 (``selection.json``); until all five searches are committed
   (``analysis/paper_study.py`` makes them) that method waits. Every run trains its whole one-cycle
   schedule (``stopping=best``). Each finished seed is copied (record, per-image test
   predictions, thinned ROC) to ``reports/atlas/seeds/<cell>/<arm>/seed_<S>/``.
3. **Table and figure**: ``reports/atlas/atlas.md`` / ``atlas.json`` (per cell and method the
   target test accuracy, mean ± std over seeds, and the share of the no-DA → oracle gap,
   :func:`analysis.paper_tables.gap_share`) and ``atlas.{png,pdf}`` (target accuracy against
   each shift axis, the oracle as the ceiling and no-DA as the floor); with the default
   ``--reports``, also README's atlas block (the figure and two sentences computed from the
   records, :func:`readme_markdown`; ``--readme FILE`` names other documents).

Exit status: 0 done; 1 a stage failed, a search the atlas needs is not committed yet, or the
deadline left work undone (rerun to resume); 2 bad arguments or records.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from analysis.headline import HELD_OUT_DATA_SEEDS, HeadlineError, load_arm_folders
from analysis.paper_study import Job, copy_seed, run, run_jobs
from analysis.paper_tables import ORACLE_MIN_GAP
from apply.shift import SEEING_STAT

REPO = Path(__file__).resolve().parents[1]
ATLAS_DATA_SEED = 21
SIZE = ("--n-mergers", "3000", "--n-nonmergers", "2700")
#: cell -> (target SB_lim in mag/arcsec^2, target PSF FWHM / source PSF FWHM).
CELLS = {"sb23": (23.0, 1.0), "sb24": (24.0, 1.0), "sb25": (25.0, 1.0), "sb26": (26.0, 1.0),
         "sb27": (27.0, 1.0), "sb25-psf1.25": (25.0, 1.25), "sb25-psf1.5": (25.0, 1.5)}
#: problem -> the search whose pick it trains (``reports/paper/searches/<search>``).
METHODS = {"none_deepmerge": "none_deepmerge", "jointbn_deepmerge": "none_deepmerge",
           "mmd_deepmerge": "mmd_deepmerge", "dann_deepmerge": "dann_deepmerge",
           "oracle_deepmerge": "none_deepmerge"}
ARMS = ("none", "jointbn", "mmd", "dann", "oracle")  #: and the newer method's, after DANN
ARM_LABELS = {"none": "no-DA", "jointbn": "joint-BN", "mmd": "MMD", "dann": "DANN",
              "oracle": "oracle (target labels)"}
SEEDS = 3
SEARCHES = Path("reports/paper/searches")
#: a method takes a cell's shift when its mean target accuracy is no more than this below the
#: oracle's; and the least oracle − no-DA gap that is judged at all (the extended table's)
NEAR_ORACLE = ORACLE_MIN_GAP
#: an arm calling at least this share of the target test images one class has collapsed
ONE_CLASS = 0.99
README_START = "<!-- shift-atlas:start (written by analysis/shift_atlas.py; checked by tests) -->"
README_END = "<!-- shift-atlas:end -->"
FIGURE = "reports/atlas/atlas.png"  #: the figure, relative to the repository's root
#: the document whose atlas block the default run refreshes (``--readme`` names others)
README_DOC = "README.md"


def cell_data(cell: str) -> str:
    """The data folder of a cell."""
    return f"data/atlas-v4-seed{ATLAS_DATA_SEED}-{cell}"


def simulate_command(cell: str, workers: int) -> list[str]:
    """``galaxies/simulate.py`` for one cell."""
    sb, psf = CELLS[cell]
    return [sys.executable, "galaxies/simulate.py", "--out", cell_data(cell), *SIZE,
            "--seed", str(ATLAS_DATA_SEED), "--limiting-sb", f"{sb:g}",
            "--target-psf-scale", f"{psf:g}", "--workers", str(max(workers, 2)), "--quiet"]


def newer_method(searches: Path) -> str | None:
    """The newer method of the atlas, chosen on development data (module docstring).

    Of :data:`analysis.paper_study.NEWER`, the problem whose committed search's label-free
    pick reached the highest target validation accuracy (``selection.json``); ``None`` until
    every one of them is committed.
    """
    from analysis.paper_study import NEWER

    scores = {}
    for problem in NEWER:
        selection = searches / problem / "selection.json"
        if not selection.is_file():
            return None
        scores[problem] = json.loads(selection.read_text())["label_free"]["target_val_accuracy"]
    return max(scores, key=scores.get)


def atlas_jobs(runs: Path, cells: list[str], newer: str | None = None) -> list[Job]:
    """Every training seed of every cell and method (and ``newer``'s), seed-major."""
    methods = {**METHODS, **({newer: newer} if newer else {})}
    jobs = []
    for seed in range(1, SEEDS + 1):
        for cell in cells:
            for problem, search in methods.items():
                out = runs / cell / problem
                jobs.append(Job(f"{cell} {problem} seed {seed}", [
                    sys.executable, "search/seeds.py", "--problem", problem, "--from-search",
                    str(SEARCHES / search), *(["--shared-config"] if search != problem else []),
                    "--seeds", str(SEEDS), "--only-seed", str(seed), "--data", cell_data(cell),
                    "--out", str(out), "--workers", "1", "--evaluator", "serial", "--quiet"],
                    [out / f"seed_{seed}" / "record.json"],
                    runs / "logs" / f"{cell}_{problem}_{seed}.log"))
    return jobs


def cell_summaries(cells: list[str]) -> dict[str, Any]:
    """The shift statistics of the source and of each cell's target test images."""
    import h5py

    from galaxies.schema import SPLITS
    from galaxies.shift_stats import summarize

    def test_images(path: Path) -> np.ndarray:
        with h5py.File(path, "r") as handle:
            rows = np.flatnonzero(handle["split"][:] == SPLITS["test"])
            return handle["images"][rows]

    out: dict[str, Any] = {"data_seed": ATLAS_DATA_SEED, "images": "every test image",
                           "cells": {}}
    for cell in cells:
        folder = REPO / cell_data(cell)
        if "source" not in out:
            out["source"] = summarize(test_images(folder / "source.h5"))
        sb, psf = CELLS[cell]
        out["cells"][cell] = {"limiting_sb": sb, "psf_scale": psf, "data": cell_data(cell),
                              "target": summarize(test_images(folder / "target.h5"))}
    return out


def cells_table(cells: dict[str, Any]) -> str:
    """Markdown: each cell's asked shift and its measured statistics (``cells.json``)."""
    lines = ["| cell | SB_lim asked | PSF × asked | SB_lim read (F814W, F356W, F160W) | median "
             "core size, px (the seeing's statistic) | median adaptive light size, px | share "
             "HSM measured |", "| --- | --- | --- | --- | --- | --- | --- |"]

    def sizes(summary: dict[str, Any], key: str, digits: int = 2) -> str:
        return ", ".join(f"{v:.{digits}f} ± {e:.{digits}f}"
                         for v, e in zip(summary[key], summary[f"{key}_err"], strict=True))

    def row(name: str, sb: str, psf: str, summary: dict[str, Any]) -> str:
        return (f"| {name} | {sb} | {psf} | {', '.join(f'{v:.1f}' for v in summary['sb_lim'])} | "
                f"{sizes(summary, 'core', 3)} | {sizes(summary, 'size')} | "
                f"{', '.join(f'{v:.2f}' for v in summary['size_ok'])} |")

    lines.append(row("source", "no noise", "1", cells["source"]))
    for name, cell in cells["cells"].items():
        lines.append(row(f"`{name}`", f"{cell['limiting_sb']:g}", f"{cell['psf_scale']:g}",
                         cell["target"]))
    return "\n".join(lines) + "\n"


def load_cells(reports: Path) -> dict[str, dict[str, Any]]:
    """``{cell: {arm: Arm}}`` of the committed records (cells without records left out).

    Raises:
        HeadlineError: a record of another data seed, unreadable predictions, or arms scored
            on different test images.
    """
    out = {}
    for cell in CELLS:
        root = reports / "seeds" / cell
        if not root.is_dir():
            continue
        arms = {arm.name: arm for arm in load_arm_folders(root)}
        for arm in arms.values():
            for record in arm.records:
                seed = record["data"]["source_attrs"].get("seed")
                if seed != ATLAS_DATA_SEED or seed not in HELD_OUT_DATA_SEEDS:
                    raise HeadlineError(f"{root}/{arm.name}: a record of data seed {seed}, "
                                        f"not the atlas's {ATLAS_DATA_SEED}")
        out[cell] = arms
    return out


def _seed_means(arm, seeds: list[int]) -> float:
    """An arm's mean target test accuracy over ``seeds``."""
    return float(arm.correct["target"][[arm.seeds.index(s) for s in seeds]].mean())


def merger_calls(reports: Path, cell: str, arm) -> tuple[float, float]:
    """The share of target test images ``arm`` calls mergers, and the share that are mergers.

    The first is the mean over the arm's seeds; the labels are the same for every seed and arm
    of a cell.
    """
    calls, truth = [], 0.0
    for seed in arm.seeds:
        with np.load(reports / "seeds" / cell / arm.name / f"seed_{seed}" /
                     "predictions.npz") as saved:
            calls.append(float((saved["target_test_p_merger"] >= 0.5).mean()))
            truth = float(saved["target_test_label"].mean())
    return float(np.mean(calls)), truth


def build(reports: Path) -> dict[str, Any]:
    """Per cell the oracle's gap over no-DA; per cell and arm the accuracies and collapse.

    Per cell and arm: seeds, accuracy mean ± std, the share of the oracle gap, and one-class
    collapse.

    A cell's ``oracle_gap`` is the oracle's mean target test accuracy minus no-DA's over the
    seeds the two share (``None`` without both); every arm's share of it
    (:func:`analysis.paper_tables.gap_share`, over the seeds the three share) is left out
    (``None``) where that gap is below :data:`NEAR_ORACLE`: a share of a gap that small is
    noise, not a finding. An arm that calls at least :data:`ONE_CLASS` of the target test
    images one class, averaged over its seeds, is marked ``one_class`` (merger / non-merger).
    """
    from analysis.paper_tables import arm_summary, gap_share

    cells = load_cells(reports)
    rows, per_cell = [], {}
    for cell, arms in cells.items():
        sb, psf = CELLS[cell]
        common = ([s for s in arms["none"].seeds if s in arms["oracle"].seeds]
                  if {"none", "oracle"} <= set(arms) else [])
        gap = (_seed_means(arms["oracle"], common) - _seed_means(arms["none"], common)
               if common else None)
        mergers = None
        for name in arm_order(arms):
            summary = arm_summary(arms[name])
            share = gap_share(arms, name)
            calls, mergers = merger_calls(reports, cell, arms[name])
            one_class = ("merger" if calls >= ONE_CLASS else
                         "non-merger" if calls <= 1 - ONE_CLASS else None)
            rows.append({"cell": cell, "limiting_sb": sb, "psf_scale": psf, "arm": name,
                         "seeds": summary["seeds"], "target": summary["target"],
                         "source": summary["source"], "merger_calls": calls,
                         "one_class": one_class,
                         "oracle_gap_share": None if share is None or gap is None
                         or gap < NEAR_ORACLE else share["share"]})
        per_cell[cell] = {"limiting_sb": sb, "psf_scale": psf, "oracle_gap": gap,
                          "oracle_gap_seeds": common, "merger_share": mergers}
    return {"data_seed": ATLAS_DATA_SEED, "cells": per_cell, "rows": rows}


def arm_order(arms) -> list[str]:
    """:data:`ARMS` present, the newer method's arm after DANN, the oracle last."""
    extra = sorted(set(arms) - set(ARMS))
    order = [a for a in ARMS if a != "oracle"] + extra + ["oracle"]
    return [a for a in order if a in arms]


def label(arm: str) -> str:
    """An arm's column label (a newer method's from its spec)."""
    if arm in ARM_LABELS:
        return ARM_LABELS[arm]
    from training.registry import get_method

    return get_method(arm).label


def _pct(stats: dict[str, Any]) -> str:
    if len(stats["per_seed"]) < 2:
        return f"{100 * stats['mean']:.1f} (1 seed)"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def markdown(result: dict[str, Any]) -> str:
    """The atlas table: a row per cell, a column per method (target test accuracy, %)."""
    by_cell: dict[str, dict[str, Any]] = {}
    for row in result["rows"]:
        by_cell.setdefault(row["cell"], {})[row["arm"]] = row
    arms = arm_order({*ARMS, *(row["arm"] for row in result["rows"])})
    head = ["cell", "SB_lim", "PSF ×", "oracle − no-DA (points)", *(label(a) for a in arms)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for cell in CELLS:
        if cell not in by_cell:
            continue
        sb, psf = CELLS[cell]
        cells = []
        for arm in arms:
            row = by_cell[cell].get(arm)
            if row is None:
                cells.append("not run yet")
                continue
            share = row["oracle_gap_share"]
            cells.append(_pct(row["target"]) + ("" if share is None
                                                else f" ({100 * share:.0f} % of gap)")
                         + (f", all {row['one_class']}s" if row["one_class"] else ""))
        gap = result["cells"][cell]["oracle_gap"]
        lines.append(f"| `{cell}` | {sb:g} | {psf:g} | "
                     f"{'—' if gap is None else f'{100 * gap:+.1f}'} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Target test accuracy (%), mean ± std over training seeds, DeepMerge, data "
                 f"seed {result['data_seed']} (a third of the paper's size); in brackets the "
                 "share of the no-DA → oracle gap the method closes (seed means over the seeds "
                 f"the three share; none where the oracle is less than {100 * NEAR_ORACLE:.0f} "
                 "points above no-DA, whose share would be noise); \"all mergers\": the method "
                 f"calls at least {100 * ONE_CLASS:.0f} % of the target test images one class "
                 "(one-class collapse; its accuracy is that class's share). Built by `python "
                 "analysis/shift_atlas.py --tables-only`.")
    return "\n".join(lines) + "\n"


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def informative_depths(result: dict[str, Any]) -> list[str]:
    """The noise-depth cells where target labels help enough to judge a method.

    Those at the source's PSF whose oracle is at least :data:`NEAR_ORACLE` above no-DA,
    deepest sky first.
    """
    return sorted((c for c, v in result["cells"].items() if v["psf_scale"] == 1.0
                   and v["oracle_gap"] is not None and v["oracle_gap"] >= NEAR_ORACLE),
                  key=lambda c: -CELLS[c][0])


def near_oracle_depth(result: dict[str, Any], arm: str) -> dict[str, Any]:
    """How far along the noise depth ``arm`` stays within :data:`NEAR_ORACLE` below the oracle.

    Walks :func:`informative_depths` where ``arm`` has records, from the deepest sky to the
    shallowest, and returns ``{walked: [SB_lim, ...], reach, every}``: the shallowest SB_lim
    reached before the first cell where the arm's mean target accuracy falls more than
    :data:`NEAR_ORACLE` below the oracle's (``None``: it fell in the first), and whether it
    reached every walked cell.
    """
    means = {(r["cell"], r["arm"]): r["target"]["mean"] for r in result["rows"]}
    walk = [c for c in informative_depths(result) if (c, arm) in means]
    reach = None
    for cell in walk:
        if means[(cell, arm)] < means[(cell, "oracle")] - NEAR_ORACLE:
            return {"walked": [CELLS[c][0] for c in walk], "reach": reach, "every": False}
        reach = CELLS[cell][0]
    return {"walked": [CELLS[c][0] for c in walk], "reach": reach, "every": True}


def _paired_cost(rows: dict, arm: str, base: str, other: str,
                 base_arm: str | None = None) -> tuple[float, int] | None:
    """``arm``'s target accuracy in ``other`` minus ``base_arm``'s in ``base``, paired.

    Means over the training seeds both have (``base_arm`` defaults to ``arm``), and how many.
    """
    a, b = rows.get((base, base_arm or arm)), rows.get((other, arm))
    if a is None or b is None:
        return None
    common = [s for s in a["seeds"] if s in b["seeds"]]
    if not common:
        return None

    def mean(row: dict[str, Any]) -> float:
        return float(np.mean([row["target"]["per_seed"][row["seeds"].index(s)] for s in common]))

    return mean(b) - mean(a), len(common)


def in_short(result: dict[str, Any]) -> str | None:
    """Two sentences on what the atlas says, computed from the rows (README's lead).

    First, depth against seeing: each arm's change of target accuracy from SB_lim 25 to the
    shallowest sky measured (paired over its seeds in both cells) beside the largest move
    the widest measured PSF causes at SB_lim 25 (arms without a pair are named). Second,
    which methods are at or above no-DA in every cell measured (seed means over the seeds
    both have; "so far" until every cell is in) and which call at least :data:`ONE_CLASS`
    of the target images one class, each with its cells. ``None`` before both sentences can
    be said.
    """
    rows = {(r["cell"], r["arm"]): r for r in result["rows"]}
    arms = arm_order({r["arm"] for r in result["rows"]})
    depths = sorted((c for c, (sb, psf) in CELLS.items() if psf == 1.0 and sb < 25.0
                     and any((c, a) in rows for a in arms)), key=lambda c: CELLS[c][0])
    seeing = sorted((c for c, (sb, psf) in CELLS.items() if sb == 25.0 and psf > 1.0
                     and any((c, a) in rows for a in arms)), key=lambda c: CELLS[c][1])
    if not depths or not seeing or "none" not in arms:
        return None
    shallow, widest = depths[0], seeing[-1]
    losses = {a: c for a in arms if (c := _paired_cost(rows, a, "sb25", shallow)) is not None}
    moved = {a: c for a in arms if (c := _paired_cost(rows, a, "sb25", widest)) is not None}
    if not losses or not moved:
        return None
    lost = [-100 * c[0] for c in losses.values()]
    most = 100 * max(abs(c[0]) for c in moved.values())
    unpaired = [label(a) for a in arms if a not in losses or a not in moved]
    every = "every method" if not unpaired else "every method paired in both"
    depth = (f"from SB_lim 25 to {CELLS[shallow][0]:g} {every} loses {min(lost):.1f}-"
             f"{max(lost):.1f} points of target accuracy" if min(lost) > 0 else
             f"from SB_lim 25 to {CELLS[shallow][0]:g} the methods' target accuracy changes "
             f"by {-max(lost):+.1f} to {-min(lost):+.1f} points")
    if "oracle" in losses:
        change = 100 * losses["oracle"][0]
        depth += f" (the oracle {-change:.1f})" if min(lost) > 0 else f" (the oracle {change:+.1f})"
    first = (f"{depth}, while a target PSF {CELLS[widest][1]:g} × the source's moves none by "
             f"more than {most:.1f} points at SB_lim 25"
             + (f" ({_listing(unpaired)} not paired in all three cells yet)" if unpaired else "")
             + (": over this range the sky's depth, not the seeing, is the shift that "
                "matters." if min(lost) > 2 * most else "."))
    steady = []
    complete = all((c, "none") in rows for c in CELLS)
    for arm in arms:
        if arm in ("none", "oracle"):
            continue
        paired = [p for c in CELLS if (p := _paired_cost(rows, arm, c, c, base_arm="none"))]
        complete &= len(paired) == len(CELLS)
        if paired and all(p[0] >= 0 for p in paired):
            steady.append(label(arm))
    where = "every cell" if complete else "every cell measured so far"
    collapsed: dict[str, list[str]] = {}
    for r in sorted(result["rows"], key=lambda r: CELLS[r["cell"]]):
        if r["one_class"] and r["arm"] != "oracle":
            collapsed.setdefault(label(r["arm"]), []).append(f"`{r['cell']}`")
    second = (f"{_listing(steady)} {'is' if len(steady) == 1 else 'are'} at or above no-DA in "
              f"{where}" if steady else f"No method is at or above no-DA in {where}")
    if collapsed:
        second += (f"; at least {100 * ONE_CLASS:.0f} % of the target images are called one "
                   "class by " + _listing([f"{arm} in {_listing(cells)}"
                                           for arm, cells in collapsed.items()]))
    return f"**In short:** {first[0].upper()}{first[1:]} {second}."


def readme_markdown(result: dict[str, Any]) -> str:
    """What README shows of the atlas: the figure and sentences computed from the records.

    First :func:`in_short`'s two sentences, then the details: how much noise each method
    takes (:func:`near_oracle_depth` over the depths where the oracle is well above no-DA;
    the depths where it is not are named with their numbers), the accuracies at the largest
    depth shift measured with its oracle, any one-class collapse, and what the widest target
    PSF measured costs each method against the source's PSF at SB_lim 25 (paired over the
    seeds both cells have).
    """
    if not result["rows"]:
        return ("No atlas run is committed yet (`python analysis/shift_atlas.py` trains "
                "them).\n")
    rows = {(r["cell"], r["arm"]): r for r in result["rows"]}
    arms = arm_order({r["arm"] for r in result["rows"]})
    runs = sum(len(r["seeds"]) for r in result["rows"])
    planned = len(CELLS) * (len(METHODS) + 1) * SEEDS
    seeds = sorted({len(r["seeds"]) for r in result["rows"]})
    spread = (f"{seeds[0]} training seed{'s' if seeds[0] > 1 else ''}" if len(seeds) == 1
              else f"{seeds[0]}-{seeds[-1]} training seeds")
    status = ("every planned run is in" if runs >= planned and seeds == [SEEDS] else
              f"so far {runs} of the {planned} planned runs")
    lines = [f"![Target accuracy against the shift, per method]({FIGURE})", "",
             f"*Shift atlas* (DeepMerge, held-out data seed {result['data_seed']}, a third of "
             f"the paper's size; {status}, {spread} per method and cell; table: "
             "[reports/atlas/atlas.md](reports/atlas/atlas.md)).", ""]
    lead = in_short(result)
    if lead:
        lines += [lead, ""]

    def pct(cell: str, arm: str) -> str:
        return f"{100 * rows[(cell, arm)]['target']['mean']:.1f} %"

    def sbs(values: list[float]) -> str:
        return _listing([f"{v:g}" for v in values])

    cells = result["cells"]
    others = [a for a in arms if a != "oracle"]
    measured = sorted((c for c, v in cells.items() if v["psf_scale"] == 1.0
                       and v["oracle_gap"] is not None), key=lambda c: -CELLS[c][0])
    informative = informative_depths(result)
    weak = [c for c in measured if c not in informative]
    text = ["**How much noise DA takes:**"]
    if informative:
        reach = []
        for arm in others:
            walk = near_oracle_depth(result, arm)
            if not walk["walked"]:
                reach.append(f"{label(arm)} not run there yet")
            elif walk["reach"] is None:
                reach.append(f"{label(arm)} at none of them")
            else:
                reach.append(f"{label(arm)} down to SB_lim {walk['reach']:g}"
                             + (" (all of them)" if walk["every"] else ""))
        text.append(f"with the source's PSF, at the depths where target labels help (the "
                    f"oracle ≥ {100 * NEAR_ORACLE:.0f} points above no-DA: SB_lim "
                    f"{sbs([CELLS[c][0] for c in informative])}), the target accuracy stays no "
                    f"more than {100 * NEAR_ORACLE:.0f} points below the target-trained "
                    f"oracle's for {_listing(reach)} (a lower SB_lim is a shallower sky: more "
                    "shift).")
    if weak:
        where = _listing([f"{CELLS[c][0]:g} ({100 * cells[c]['oracle_gap']:+.1f} points over "
                          f"seed{'s' * (len(cells[c]['oracle_gap_seeds']) != 1)} "
                          f"{', '.join(map(str, cells[c]['oracle_gap_seeds']))})" for c in weak])
        text.append(f"At SB_lim {where} the target-trained oracle is less than "
                    f"{100 * NEAR_ORACLE:.0f} points above no-DA: no-DA already reaches about "
                    "what target labels alone give there, so no method is judged against the "
                    "oracle.")
    if measured and others:
        gains = []
        for arm in others[1:] if others[0] == "none" else others:
            paired = [_paired_cost(rows, arm, c, c, base_arm="none") for c in measured]
            paired = [p for p in paired if p is not None]
            if paired:
                gains.append(f"{label(arm)} {100 * float(np.mean([p[0] for p in paired])):+.1f}"
                             f" ({len(paired)} depth{'s' if len(paired) > 1 else ''})")
        if gains:
            text.append("Against no-DA, target accuracy in points, averaged over the depths "
                        f"measured (paired over training seeds): {_listing(gains)}.")
    if not measured:
        text.append("no noise-depth cell has no-DA and its oracle yet.")
    else:
        worst = measured[-1]
        at = [f"{label(a)} {pct(worst, a)}" for a in [*others, "oracle"] if (worst, a) in rows]
        text.append(f"At SB_lim {CELLS[worst][0]:g}, the largest noise shift measured with its "
                    f"oracle: {_listing(at)}.")
    collapsed = [r for r in result["rows"] if r["one_class"]]
    if collapsed:
        by_arm: dict[tuple[str, str], list[str]] = {}
        for r in collapsed:
            by_arm.setdefault((r["arm"], r["one_class"]), []).append(r["cell"])
        said = [f"{label(a)} in {_listing([f'`{c}`' for c in where])} ({kind}s)"
                for (a, kind), where in by_arm.items()]
        text.append(f"One-class collapse (at least {100 * ONE_CLASS:.0f} % of the target test "
                    f"images called one class, so the accuracy is that class's share): "
                    f"{_listing(said)}.")
    lines += [" ".join(text), ""]
    seeing = sorted((c for c, (sb, psf) in CELLS.items() if sb == 25.0 and psf > 1.0
                     and any(_paired_cost(rows, a, "sb25", c) for a in arms)),
                    key=lambda c: CELLS[c][1])
    if seeing:
        widest = seeing[-1]
        costs = []
        for arm in arms:
            cost = _paired_cost(rows, arm, "sb25", widest)
            if cost is not None:
                costs.append(f"{label(arm)} {100 * cost[0]:+.1f} ({cost[1]} "
                             f"seed{'s' if cost[1] > 1 else ''})")
        lines.append(f"**Worse seeing:** at SB_lim 25, a target PSF {CELLS[widest][1]:g} × the "
                     "source's moves each method's target accuracy, in points against the "
                     f"source's PSF over the seeds both cells have: {_listing(costs)}.")
    else:
        lines.append("**Worse seeing:** no seeing cell shares a training seed of a method with "
                     "`sb25` yet.")
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any]):
    """Target accuracy against the noise depth (PSF × 1) and against the PSF (SB_lim 25)."""
    from analysis.figures import new_figure
    from training.registry import get_method

    fig = new_figure(12, 4.6)
    depth, seeing = fig.subplots(1, 2, sharey=True)
    arms = arm_order({row["arm"] for row in result["rows"]})
    shares = [v["merger_share"] for v in result["cells"].values() if v["merger_share"] is not None]
    # the accuracy of calling every image the commoner class (the cells share their galaxies)
    majority = max(max(shares), 1 - max(shares)) if shares else None
    for ax, axis, fixed, title in ((depth, "limiting_sb", ("psf_scale", 1.0),
                                    "target SB_lim (mag/arcsec²), PSF as the source's"),
                                   (seeing, "psf_scale", ("limiting_sb", 25.0),
                                    "target PSF FWHM / source PSF FWHM, SB_lim = 25")):
        for arm in arms:
            rows = sorted((r for r in result["rows"] if r["arm"] == arm
                           and r[fixed[0]] == fixed[1]), key=lambda r: r[axis])
            if not rows:
                continue
            x = [r[axis] for r in rows]
            y = [100 * r["target"]["mean"] for r in rows]
            err = [100 * r["target"]["std"] if math.isfinite(r["target"]["std"]) else 0
                   for r in rows]
            style = {"linestyle": "--"} if arm in ("oracle", "none") else {}
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label(arm),
                        color=get_method(arm).color, **style)
        values = sorted({v[0 if axis == "limiting_sb" else 1] for v in CELLS.values()})
        pad = 0.1 * (values[-1] - values[0])
        ax.set_xlim(values[0] - pad, values[-1] + pad)  # every cell's place, run or not
        if majority is not None:
            ax.axhline(100 * majority, color="0.5", linewidth=0.8, linestyle=":")
        ax.set_xlabel(title)
        ax.grid(alpha=0.3)
    depth.invert_xaxis()  # shallower (more shift) to the right
    depth.set_ylabel("target test accuracy (%), mean ± std over seeds")
    depth.set_title("noise depth (dashed: no-DA and the target-trained oracle; dotted: "
                    "one class for every image)", fontsize=10)
    seeing.set_title("seeing", fontsize=10)
    if depth.get_legend_handles_labels()[0]:
        depth.legend(fontsize=8)
    return fig


def tables(reports: Path, readmes: list[Path] | tuple[Path, ...] = ()) -> int:
    """Write ``atlas.md``, ``atlas.json`` and ``atlas.{png,pdf}`` from the records.

    With ``readmes``, also the block between :data:`README_START` and :data:`README_END` of
    each (:func:`readme_markdown`).
    """
    from analysis.figures import save_figure
    from analysis.paper_tables import readme_block, schedule_violations, update_readme
    from training.record import json_safe

    try:
        result = build(reports)
    except HeadlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stopped = schedule_violations(reports, "*/*/seed_*/record.json")
    if stopped:  # the fair stopping rule: the same full schedule for every method and cell
        print("error: records stopped before their schedule ended or under different rules "
              "(rerun them with the study's stopping rule):\n  " + "\n  ".join(stopped),
              file=sys.stderr)
        return 2
    if not result["rows"]:
        print(f"no atlas records under {reports / 'seeds'} yet: nothing written (python "
              "analysis/shift_atlas.py trains them)")
        return 0
    try:
        for readme in readmes:  # every block exists before anything is written
            readme_block(readme, README_START, README_END)
    except HeadlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "atlas.json").write_text(json.dumps(json_safe(result), indent=1,
                                                   allow_nan=False) + "\n")
    (reports / "atlas.md").write_text(markdown(result))
    save_figure(figure(result), reports / "atlas")
    for readme in readmes:
        update_readme(readme, readme_markdown(result), README_START, README_END)
    print(markdown(result), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``analysis/shift_atlas.py``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="analysis/shift_atlas.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/atlas"),
                        help="training folders (default runs/atlas)")
    parser.add_argument("--reports", type=Path, default=Path("reports/atlas"),
                        help="committed records, table and figure (default reports/atlas)")
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), metavar="CELL",
                        help=f"these cells only ({', '.join(CELLS)})")
    parser.add_argument("--workers", type=int, default=2, help="trials at once (default 2)")
    parser.add_argument("--deadline-min", type=float, default=None, metavar="M",
                        help="start no training after M minutes, then build the table")
    only = parser.add_mutually_exclusive_group()
    parser.add_argument("--readme", type=Path, action="append", default=[], metavar="FILE",
                        help="rewrite the atlas block of FILE (README.md) with the figure and "
                             "its two sentences (repeatable)")
    only.add_argument("--data-only", action="store_true",
                      help="only simulate the cells and write their shift statistics")
    only.add_argument("--tables-only", action="store_true",
                      help="only the table and figure from the committed records")
    only.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.deadline_min is not None and not args.deadline_min > 0:
        parser.error("--deadline-min must be > 0")
    reports = REPO / args.reports
    default = reports.resolve() == (REPO / "reports" / "atlas").resolve()
    readmes = args.readme or ([REPO / README_DOC] if default else [])
    if args.tables_only:
        return tables(reports, readmes)
    cells = args.cells or list(CELLS)
    newer = newer_method(REPO / SEARCHES)
    jobs = atlas_jobs(args.runs, cells, newer)
    if args.dry_run:
        for command in [simulate_command(c, args.workers) for c in cells] + [j.command
                                                                               for j in jobs]:
            print(shlex.join(c if c != sys.executable else "python" for c in command))
        if newer is None:
            print("# the newer method is chosen when the five newer searches are committed")
        print(shlex.join(["python", "analysis/shift_atlas.py", "--tables-only", "--reports",
                          str(args.reports), *(x for r in args.readme or
                                               ([README_DOC] if default else [])
                                               for x in ("--readme", str(r)))]))
        return 0
    deadline = (time.monotonic() + 60 * args.deadline_min
                if args.deadline_min is not None else None)
    for cell in cells:
        if not (REPO / cell_data(cell) / "target.h5").is_file() and \
                run(simulate_command(cell, args.workers)) != 0:
            return 1
    summaries = reports / "cells.json"
    known = json.loads(summaries.read_text()) if summaries.is_file() else {"cells": {}}
    stale = [c for c, cell in known["cells"].items() if SEEING_STAT not in cell["target"]]
    if stale:  # measured before the meter's seeing statistic existed
        known = {"cells": {}}
    if set(cells) - set(known["cells"]):
        print(f"shift statistics of {len(cells)} cells -> {args.reports / 'cells.json'}",
              flush=True)
        fresh = cell_summaries(cells)
        known = {**fresh, "cells": {**known["cells"], **fresh["cells"]}}
        summaries.parent.mkdir(parents=True, exist_ok=True)
        summaries.write_text(json.dumps(known, indent=1) + "\n")
    if args.data_only:
        return 0
    missing = sorted({s for s in METHODS.values() if not (REPO / SEARCHES / s /
                                                          "results.csv").is_file()})
    ready = [j for j in jobs if Path(j.command[j.command.index("--from-search") + 1]).name
             not in missing]
    if missing:
        print(f"not committed yet: the searches {missing} (python analysis/paper_study.py "
              "makes them); their methods wait", flush=True)
    if newer is None:
        print("the newer method waits: it is chosen once the searches of CORAL, MMD+FE, "
              "DANN+FE, CDAN and SIDDA are committed (python analysis/paper_study.py)",
              flush=True)

    def collect(trial: Path) -> None:
        from analysis.headline import arm_name

        cell = trial.parent.parent.name
        record = json.loads((trial / "record.json").read_text())
        if record.get("status") != "ok":
            raise ValueError(f"{trial}: record status {record.get('status')!r}, not ok")
        copy_seed(trial, reports / "seeds" / cell / arm_name(record) / trial.name)

    status = run_jobs(ready, reports, args.workers, deadline, collect)
    return max(status, 1 if missing or newer is None else 0, tables(reports, readmes))


if __name__ == "__main__":
    sys.exit(main())
