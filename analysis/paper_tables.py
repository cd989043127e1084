r"""Table 1, Figure 1 and the extended table of the paper-scale study, from committed records.

Usage::

    python analysis/paper_tables.py                      # reads and writes reports/paper
    python analysis/paper_tables.py --reports DIR --readme README.md

Reads only the copies :func:`analysis.paper_study.collect_seed` commits,
``<reports>/seeds/data<D>/<backbone>/<arm>/seed_<S>/`` (``record.json``, ``predictions.npz``,
thinned ``roc.json``), and writes beside them:

* ``table1.md``: the paper's Table 1 layout (Ciprijanovic et al. 2020) —
  DeepMerge and ResNet18 × no-DA / MMD / DANN, source and target test accuracy, the training
  seed 1 value and mean ± sample std over the training seeds, on each held-out data seed
  (the first with 10 seeds, the second with 3), with the paper's own numbers in columns
  beside ours (:data:`PAPER_TABLE1`, :data:`PAPER_SEEDS`).
* ``extended.md``: per backbone, on the first held-out data seed, every arm
  (controls, classical baseline, newer methods, the target-trained oracle) with its share of
  the no-DA → oracle gap,

  .. math:: s = \frac{\bar a_T(\mathrm{arm}) - \bar a_T(\mathrm{none})}
                     {\bar a_T(\mathrm{oracle}) - \bar a_T(\mathrm{none})},

  :math:`\bar a_T` the target test accuracy averaged over the training seeds the three share,
  and paired differences against no-DA and joint-BN with their 95 % cluster-bootstrap
  intervals over test galaxies (:func:`analysis.compare.paired_difference_over_seeds`, over
  the seeds both arms have).
* ``figure1.{png,pdf}``: Figure 1 of the paper for both backbones — test accuracy, precision,
  recall, F1, Brier score and AUC (mean ± std over seeds, source hatched, target solid) and
  the target-test ROC curves of every seed.
* ``paper_tables.json``: every number of both tables (per-seed values, paired intervals).

Every record must have run its whole one-cycle schedule (:func:`schedule_violations`, the fair
stopping rule of ``benchmarks/results/stopping-and-searches.md``, "A fair stopping rule"):
a run stopped before its
learning rate annealed is refused (exit status 2).

Rows without records yet are shown as missing, never filled in. With ``--readme FILE``
(repeatable: README.md, the results page), the block between :data:`README_START` and
:data:`README_END` is rewritten with Table 1 (``tests/test_paper_tables.py`` checks every such
block against the records). Nothing is rerun.

Exit status: 0 done; 2 bad records (a failed or truncated run, mixed data, unreadable file).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from analysis.compare import CompareError, paired_difference_over_seeds
from analysis.headline import (
    DOMAINS,
    HELD_OUT_DATA_SEEDS,
    Arm,
    HeadlineError,
    arm_color,
    load_arm_folders,
    table_backbone,
)
from training.metrics import METRIC_NAMES
from training.record import read_json
from training.registry import baseline_names, baseline_specs

BACKBONES = ("deepmerge", "resnet18")
BACKBONE_LABELS = {"deepmerge": "DeepMerge", "resnet18": "ResNet18"}
PAPER_ARMS = ("none", "mmd", "dann")
ARM_LABELS = {"none": "no-DA", "mmd": "MMD", "dann": "DANN"}
#: Table 1 of Ciprijanovic et al. (2020): training seed 1, test accuracy (%) source, target.
PAPER_TABLE1 = {("deepmerge", "none"): (84.8, 52.0), ("deepmerge", "mmd"): (86.9, 76.6),
                ("deepmerge", "dann"): (87.4, 78.6), ("resnet18", "none"): (81.1, 60.5),
                ("resnet18", "mmd"): (90.4, 73.8), ("resnet18", "dann"): (92.3, 71.6)}
#: The paper's 10 training seeds of DeepMerge: (mean, std) source, (mean, std) target (%).
PAPER_SEEDS = {("deepmerge", "none"): ((83.6, 0.7), (57.0, 5.2)),
               ("deepmerge", "mmd"): ((86.6, 1.3), (77.3, 0.6)),
               ("deepmerge", "dann"): ((86.5, 0.9), (78.9, 0.5))}
#: Rows of the extended table, in order, after the baselines that join the backbone's tables
#: (arms not run yet are listed as missing).
EXTENDED_ARMS = ("none", "none-perdomain", "adabn", "jointbn", "mmd", "dann",
                 "coral", "mmdfe", "dannfe", "cdan", "sidda", "oracle", "oracleboth")
#: The ceilings of the gap shares: the target-trained oracle (the issue's) and the source +
#: target oracle (``training/methods/oracleboth.py``), one column each where it is planned.
CEILINGS = ("oracle", "oracleboth")
CEILING_COLUMNS = {"oracle": "share of the no-DA → oracle gap",
                   "oracleboth": "share of the no-DA → source + target oracle gap"}
#: The arms the study plans per backbone (``analysis/paper_study.py``): ResNet18 gets its
#: three paper rows, joint-BN and the oracle only. Arms with records are listed in any case.
PLANNED_ARMS = {"deepmerge": EXTENDED_ARMS,
                "resnet18": ("none", "jointbn", "mmd", "dann", "oracle")}
#: Backbones whose Table 1 rows the study trains on its first held-out data seed only.
FIRST_DATA_SEED_ONLY = ("resnet18",)
#: Paired against every arm: no-DA and joint-BN (columns); MMD, DANN and the target-trained
#: oracle (the sentences of :func:`extended_lines`).
REFERENCES = ("none", "jointbn", "mmd", "dann", "oracle")
#: Short names of the extended table's arms in sentences (:func:`extended_lines`).
SHORT = {"none": "no-DA", "none-perdomain": "per-domain normalisation", "adabn": "AdaBN",
         "jointbn": "joint-BN", "mmd": "MMD", "dann": "DANN", "coral": "CORAL",
         "mmdfe": "MMD+FE", "dannfe": "DANN+FE", "cdan": "CDAN", "sidda": "SIDDA",
         "classical": "the classical baseline", "oracle": "the target-trained oracle",
         "oracleboth": "the source + target oracle"}
CONTROL_ARMS = ("jointbn", "adabn", "none-perdomain")
NEWER_ARMS = ("coral", "mmdfe", "dannfe", "cdan", "sidda")
#: the least oracle − no-DA target gap (accuracy) whose shares are reported
ORACLE_MIN_GAP = 0.05
README_START = "<!-- paper-table1:start (written by analysis/paper_tables.py; checked by tests) -->"
README_END = "<!-- paper-table1:end -->"
N_BOOT = 2000
BOOT_SEED = 0


def data_seeds(reports: Path) -> list[int]:
    """The held-out data seeds with records under ``reports/seeds/``, ascending."""
    folders = (reports / "seeds").glob("data*") if (reports / "seeds").is_dir() else []
    return sorted(int(p.name[4:]) for p in folders if p.name[4:].isdigit())


def load_backbone(reports: Path, data_seed: int, backbone: str) -> dict[str, Arm]:
    """The arms of one backbone on one held-out data seed (empty when none ran yet).

    Raises:
        HeadlineError: a record that is not ``ok``, unreadable predictions, arms scored on
            different test images, or a data seed that is not held out.
    """
    root = reports / "seeds" / f"data{data_seed}" / backbone
    if not root.is_dir():
        return {}
    if data_seed not in HELD_OUT_DATA_SEEDS:
        raise HeadlineError(f"{root}: data seed {data_seed} is not held out "
                            f"{HELD_OUT_DATA_SEEDS}; a table may not read it")
    arms = {arm.name: arm for arm in load_arm_folders(root)}
    for arm in arms.values():
        for record in arm.records:
            seed = record["data"]["source_attrs"].get("seed")
            if seed != data_seed or table_backbone(record) != backbone:
                raise HeadlineError(f"{root}/{arm.name}: a record of data seed {seed}, "
                                    f"backbone {record.get('backbone')} in the wrong folder")
    return arms


def schedule_violations(reports: Path, pattern: str = "data*/*/*/seed_*/record.json"
                        ) -> list[str]:
    """Every committed record that stopped before its one-cycle schedule ended.

    A record passes when it ran all ``config.epochs`` epochs (``epochs_run``) and its stopping
    rule is not the patience rule (early stopping as the paper describes it, which may end a
    run during the high-learning-rate phase); a baseline (the classical one) has no schedule
    and passes. Every method gets the
    same rule and budget: records with different ``(stopping, epochs)`` are listed too.
    """
    bad = []
    rules: dict[tuple[Any, Any], str] = {}
    for path in sorted((reports / "seeds").glob(pattern)):  # the atlas: <cell>/<arm>/seed_*
        record = read_json(path)
        if record is None:
            bad.append(f"{path}: unreadable")
            continue
        if record.get("method") in baseline_names():
            continue
        config = record.get("config") or {}
        epochs, ran = config.get("epochs"), record.get("epochs_run")
        rule = config.get("stopping")
        if rule not in ("best", "last", "best_after_peak") or ran != epochs:
            bad.append(f"{path}: stopping {rule!r}, ran {ran} of {epochs} epochs")
        rules.setdefault((rule, epochs), str(path))
    if len(rules) > 1:
        bad.append("not one stopping rule and budget for every method: " + "; ".join(
            f"stopping {rule!r} over {epochs} epochs (e.g. {path})"
            for (rule, epochs), path in rules.items()))
    return bad


def _stats(values: np.ndarray) -> dict[str, Any]:
    return {"per_seed": [float(v) for v in values], "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan}


def arm_summary(arm: Arm) -> dict[str, Any]:
    """Seeds, seed-1 accuracy and mean ± std of both domains, and every test metric's mean."""
    row: dict[str, Any] = {"seeds": arm.seeds, "label": arm.label}
    for domain in DOMAINS:
        acc = arm.accuracy(domain)
        row[domain] = _stats(acc)
        row[domain]["seed1"] = float(acc[arm.seeds.index(1)]) if 1 in arm.seeds else None
        row[f"{domain}_metrics"] = {
            name: _stats(np.array([r["metrics"][f"{domain}_test"][name]
                                   for r in arm.records], dtype=float))
            for name in METRIC_NAMES if all(name in r["metrics"].get(f"{domain}_test", {})
                                            for r in arm.records)}
    row["machines"] = sorted({str(r.get("machine")) for r in arm.records})
    row["precision"] = sorted({str((r.get("compute_path") or {}).get("precision"))
                               for r in arm.records})
    return row


def paired(base: Arm, arm: Arm, domain: str) -> dict[str, Any] | None:
    """Paired Δ (arm − base) over the seeds both have, or None when they share none."""
    common = [s for s in arm.seeds if s in base.seeds]
    if not common or base is arm:
        return None
    a = base.correct[domain][[base.seeds.index(s) for s in common]]
    b = arm.correct[domain][[arm.seeds.index(s) for s in common]]
    try:
        out = paired_difference_over_seeds(a, b, arm.groups[domain], N_BOOT, BOOT_SEED)
    except CompareError as exc:
        raise HeadlineError(str(exc)) from exc
    return {**out, "seeds": common}


def gap_share(arms: dict[str, Arm], name: str, ceiling: str = "oracle") -> dict[str, Any] | None:
    """The arm's share of the no-DA → ``ceiling`` target gap, over the seeds the three share.

    ``ceiling`` is one of :data:`CEILINGS`. ``share`` is ``None`` where the ceiling is less
    than :data:`ORACLE_MIN_GAP` above no-DA: no-DA then already reaches about what target
    labels give, and a share of so small a gap is noise (the shift atlas found such cells,
    ``analysis/shift_atlas.py``).
    """
    if name in ("none", ceiling) or not {"none", ceiling, name} <= set(arms):
        return None
    common = [s for s in arms[name].seeds
              if s in arms["none"].seeds and s in arms[ceiling].seeds]
    if not common:
        return None

    def mean(arm: Arm) -> float:
        return float(arm.correct["target"][[arm.seeds.index(s) for s in common]].mean())

    floor, top = mean(arms["none"]), mean(arms[ceiling])
    if top - floor < ORACLE_MIN_GAP:
        return {"seeds": common, "share": None, "gap": top - floor}
    return {"seeds": common, "gap": top - floor,
            "share": (mean(arms[name]) - floor) / (top - floor)}


def build(reports: Path) -> dict[str, Any]:
    """Every number of the three tables (``table1``, ``extended``) from the records."""
    seeds = data_seeds(reports)
    table1: list[dict[str, Any]] = []
    extended: dict[str, Any] = {}
    for backbone in BACKBONES:
        per_data = {d: load_backbone(reports, d, backbone) for d in seeds}
        for name in PAPER_ARMS:
            row = {"backbone": backbone, "arm": name, "paper_seed1": PAPER_TABLE1[(backbone, name)],
                   "paper_seeds": PAPER_SEEDS.get((backbone, name)), "ours": {}}
            for data_seed, arms in per_data.items():
                if name in arms:
                    row["ours"][str(data_seed)] = arm_summary(arms[name])
            table1.append(row)
        if seeds and per_data[seeds[0]]:
            arms = per_data[seeds[0]]
            rows = []
            listed = [*(b.name for b in baseline_specs() if b.joins == backbone),
                      *PLANNED_ARMS.get(backbone, EXTENDED_ARMS)]
            for name in [*listed, *sorted(set(arms) - set(listed))]:
                if name not in arms:
                    rows.append({"arm": name, "missing": True})
                    continue
                row = {"arm": name, **arm_summary(arms[name]),
                       "vs": {ref: {d: paired(arms[ref], arms[name], d) for d in DOMAINS}
                              for ref in REFERENCES if ref in arms and ref != name},
                       "oracle_gap": gap_share(arms, name),
                       "oracleboth_gap": gap_share(arms, name, "oracleboth")}
                rows.append(row)
            extended[backbone] = {"data_seed": seeds[0], "arms": rows}
    return {"data_seeds": seeds, "table1": table1, "extended": extended,
            "bootstrap": {"n": N_BOOT, "seed": BOOT_SEED},
            "provenance": provenance(reports),
            "schedule_violations": schedule_violations(reports)}


def provenance(reports: Path) -> dict[str, Any]:
    """What made Table 1's records: machines, precision paths, versions, summed wall time.

    Also per backbone (``backbones``), since the two backbones' rows may come from different
    machines and precision paths (e.g. DeepMerge in bf16 on one CPU, ResNet18 in fp32 on another).
    """
    # Table 1's arm folders only (per-domain normalisation's records say method "none" too)
    paths = [p for p in sorted((reports / "seeds").glob("data*/*/*/seed_*/record.json"))
             if p.parent.parent.name in PAPER_ARMS]
    records = [read_json(p) or {} for p in paths]
    versions = {name: sorted({str((r.get("versions") or {}).get(name)) for r in records})
                for name in ("torch", "deephyper", "galsim")}
    per_backbone: dict[str, list[dict[str, Any]]] = {}
    for path, record in zip(paths, records, strict=True):
        per_backbone.setdefault(path.parent.parent.parent.name, []).append(record)
    return {**_made_by(records), "versions": versions,
            "backbones": {b: _made_by(per_backbone[b]) for b in BACKBONES if b in per_backbone}}


def _made_by(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, machines, precision paths and summed wall time of some records.

    ``paths``: the same per (machine, precision) pair, so that mixed machines stay paired with
    the precision each ran.
    """
    def key(r: dict[str, Any]) -> tuple[str, str]:
        return str(r.get("machine")), str((r.get("compute_path") or {}).get("precision"))

    def hours(rs: list[dict[str, Any]]) -> float:
        return sum(float(r.get("wall_time_s") or 0.0) for r in rs) / 3600

    pairs = sorted({key(r) for r in records})
    return {"records": len(records),
            "machines": sorted({m for m, _ in pairs}),
            "precision": sorted({p for _, p in pairs}),
            "wall_hours": hours(records),
            "paths": [{"machine": m, "precision": p,
                       "records": sum(key(r) == (m, p) for r in records),
                       "wall_hours": hours([r for r in records if key(r) == (m, p)])}
                      for m, p in pairs]}


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _paths_text(made: dict[str, Any]) -> str:
    """``on <machine> in <precision>``, one clause per (machine, precision) pair."""
    if len(made["paths"]) == 1:
        path = made["paths"][0]
        return f"on {path['machine']} in {path['precision']}"
    return " and ".join(f"{_runs(p['records'])} ({p['wall_hours']:.1f} h) on {p['machine']} "
                        f"in {p['precision']}" for p in made["paths"])


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _mean_std(stats: dict[str, Any]) -> str:
    if len(stats["per_seed"]) < 2:
        return f"{_pct(stats['mean'])} (1 seed)"
    return f"{_pct(stats['mean'])} ± {_pct(stats['std'])}"


def _seeds(seeds: list[int]) -> str:
    """``"seed 1"`` or ``"seeds 1, 2, 3"``."""
    return f"seed{'s' * (len(seeds) != 1)} {', '.join(map(str, seeds))}"


def _delta(comparison: dict[str, Any] | None, seeds: list[int] | None = None) -> str:
    """``+Δ [low, high]``, and the seeds it pairs when they are not all of the row's."""
    if not comparison:
        return ""
    paired_on = ("" if seeds is None or comparison["seeds"] == list(seeds) else
                 f" ({_seeds(comparison['seeds'])})")
    return (f"{100 * comparison['delta']:+.1f} [{100 * comparison['ci_low']:+.1f}, "
            f"{100 * comparison['ci_high']:+.1f}]{paired_on}")


def _mean_over(summary: dict[str, Any], domain: str, seeds: list[int]) -> float:
    """An arm summary's mean accuracy (%) of ``domain`` over the training ``seeds``."""
    values = dict(zip(summary["seeds"], summary[domain]["per_seed"], strict=True))
    return 100 * float(np.mean([values[s] for s in seeds]))


def _per_seed(summary: dict[str, Any], domain: str, seeds: list[int]) -> np.ndarray:
    """An arm summary's accuracies (%) of ``domain`` on the training ``seeds``, in order."""
    values = dict(zip(summary["seeds"], summary[domain]["per_seed"], strict=True))
    return 100 * np.asarray([values[s] for s in seeds], dtype=float)


def _sem(values: np.ndarray) -> float:
    """Standard error of a mean over seeds (0 for one seed: nothing to spread)."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def verdict(ours: float, ours_se: float, paper: float, paper_se: float | None) -> str:
    """``agrees`` when two numbers are within two standard errors of their difference.

    Else ``larger`` / ``smaller`` (than the paper's), or ``opposite sign`` when they differ
    in sign beyond that. ``paper_se`` of the paper's seed-1 values (one run each) is the
    spread of one run, our per-seed std (:func:`_single_run_sd`); with no spread at all (one
    seed against seed-1 values) ``no spread to judge by``.
    """
    scale = 2 * math.hypot(ours_se, paper_se or 0.0)
    if scale == 0:
        return "no spread to judge by"
    if abs(ours - paper) <= scale:
        return "agrees"
    if ours * paper < 0:
        return "opposite sign"
    return "larger" if abs(ours) > abs(paper) else "smaller"


def _against(acc: dict[str, Any], paper: dict[str, Any], paper_sd: dict[str, Any],
             domain: str, arm: str) -> tuple[str, str]:
    """``'MMD +11.3 ± 2.0 (paper +20.3 ± 1.7)'`` and its :func:`verdict`, for arm - no-DA.

    ``acc[domain][arm]``: our per-seed accuracies (%); ``paper[domain][arm]`` the paper's,
    ``paper_sd[domain][arm]`` its standard error of the mean (``None`` for seed-1 values).
    """
    diff = acc[domain][arm] - acc[domain]["none"]
    mine, mine_se = float(np.mean(diff)), _sem(diff)
    theirs = paper[domain][arm] - paper[domain]["none"]
    sds = (paper_sd[domain][arm], paper_sd[domain]["none"])
    se = math.hypot(*sds) if None not in sds else None
    text = (f"{ARM_LABELS[arm]} {mine:+.1f} ± {mine_se:.1f} (paper {theirs:+.1f}"
            + (f" ± {se:.1f})" if se is not None else ")"))
    return text, verdict(mine, mine_se, theirs, se if se is not None else _single_run_sd(diff))


def _single_run_sd(values: np.ndarray) -> float | None:
    """The spread of one run (the paper's seed-1 value): our per-seed std, if we have one."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


_SAID = {"agrees": "agrees with the paper's", "smaller": "smaller than the paper's",
         "larger": "larger than the paper's",
         "opposite sign": "of the opposite sign to the paper's",
         "no spread to judge by": "one seed: no spread to judge by"}


def _sentence(what: str, parts: list[tuple[str, str]]) -> str:
    """``what`` with each arm's :func:`_against` text, then the verdicts in words."""
    words = {v for _, v in parts}
    if len(words) == 1:
        word = words.pop()
        tail = "both agree with the paper's" if word == "agrees" else f"both {_SAID[word]}"
    else:
        tail = "; ".join(f"{text.split(' ')[0]} {_SAID[v]}" for text, v in parts)
    return f"{what} {', '.join(t for t, _ in parts)} points: {tail}"


def comparison_lines(result: dict[str, Any]) -> list[str]:
    """Plain statements comparing our rows with the paper's, computed from the records.

    Per backbone with all three rows on a data seed, over the training seeds all three rows
    have (named): the target gain of MMD and DANN over no-DA, no-DA's target accuracy and the
    source change with DA, each against the paper's (its 10-seed means for DeepMerge, else its
    seed-1 values) with a verdict from :func:`verdict`: ours ± the standard error of the
    paired per-seed differences, the paper's ± its 10-seed stds / √10 combined as unpaired
    (a seed-1 value: one run, whose spread is taken as our per-seed std), "agrees" within two
    standard errors of the difference. A rough guide, not a test: the paired intervals are in
    ``extended.md``.
    """
    out = []
    for backbone in BACKBONES:
        rows = {r["arm"]: r for r in result["table1"] if r["backbone"] == backbone}
        for data_seed in result["data_seeds"]:
            ours = {arm: rows[arm]["ours"].get(str(data_seed)) for arm in PAPER_ARMS}
            if not all(ours.values()):
                continue
            common = sorted(set.intersection(*(set(ours[a]["seeds"]) for a in PAPER_ARMS)))
            if not common:
                continue
            tenfold = all(rows[a]["paper_seeds"] for a in PAPER_ARMS)
            paper, paper_sd = {}, {}
            for domain, k in (("source", 0), ("target", 1)):
                paper[domain] = {a: (rows[a]["paper_seeds"][k][0] if tenfold
                                     else rows[a]["paper_seed1"][k]) for a in PAPER_ARMS}
                paper_sd[domain] = {a: (rows[a]["paper_seeds"][k][1] / math.sqrt(10)
                                        if tenfold else None) for a in PAPER_ARMS}
            acc = {d: {a: _per_seed(ours[a], d, common) for a in PAPER_ARMS}
                   for d in ("source", "target")}

            none = acc["target"]["none"]
            none_se = _sem(none)
            none_paper_se = (paper_sd["target"]["none"] if tenfold
                             else _single_run_sd(none))
            none_word = verdict(float(np.mean(none)), none_se, paper["target"]["none"],
                                none_paper_se)
            none_said = {"agrees": "as in the paper", "larger": "higher than the paper's",
                         "smaller": "lower than the paper's"}.get(none_word, none_word)
            spread = float(np.std(none, ddof=1)) if len(none) > 1 else math.nan
            spread_text = ("" if not math.isfinite(spread) else
                           f", its std over these seeds {spread:.1f}"
                           + (f" (paper {rows['none']['paper_seeds'][1][1]})" if tenfold else ""))
            which = "10-seed means" if tenfold else "seed-1 values"
            gain, cost = (_sentence(what, [_against(acc, paper, paper_sd, domain, a)
                                           for a in ("mmd", "dann")])
                          for what, domain in (("target gain over no-DA", "target"),
                                               ("Source change with DA", "source")))
            out.append(
                f"{BACKBONE_LABELS[backbone]}, data seed {data_seed} (training seeds "
                f"{', '.join(map(str, common))}, which all three rows have; the paper's "
                f"{which}): {gain}. No-DA reaches {np.mean(none):.1f} % on the target (paper "
                f"{paper['target']['none']:.1f}): {none_said}{spread_text}. {cost}.")
    return out


def table1_markdown(result: dict[str, Any]) -> str:
    """Table 1 in the paper's layout, the paper's numbers beside ours (what README shows)."""
    seeds = result["data_seeds"]
    head = ["backbone", "method", "paper: seed 1 (src / tgt)", "paper: 10 seeds (src / tgt)"]
    for data_seed in seeds:
        head += [f"ours, data seed {data_seed}: seed 1 (src / tgt)",
                 f"ours, data seed {data_seed}: mean ± std (src / tgt)", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in result["table1"]:
        paper_seeds = row["paper_seeds"]
        cells = [BACKBONE_LABELS[row["backbone"]], ARM_LABELS[row["arm"]],
                 "{} / {}".format(*row["paper_seed1"]),
                 ("{} ± {} / {} ± {}".format(*paper_seeds[0], *paper_seeds[1])
                  if paper_seeds else "—")]
        for data_seed in seeds:
            ours = row["ours"].get(str(data_seed))
            if ours is None:
                planned = row["backbone"] not in FIRST_DATA_SEED_ONLY or data_seed == seeds[0]
                cells += (["not run yet", "not run yet", "0"] if planned
                          else ["not planned", "not planned", "—"])
                continue
            cells += [f"{_pct(ours['source']['seed1'])} / {_pct(ours['target']['seed1'])}",
                      f"{_mean_std(ours['source'])} / {_mean_std(ours['target'])}",
                      str(len(ours["seeds"]))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Test accuracy (%), source / target; mean ± sample std over the training seeds "
                 "(`seeds` column); generator v4 at the paper's size (8120 mergers, 7306 "
                 "non-mergers, 70/10/20); each configuration is its DeepHyper search's "
                 "label-free pick on development data; every run trained its whole one-cycle "
                 "schedule (`stopping=best`). Built by `python analysis/paper_tables.py`.")
    comparison = comparison_lines(result)
    if comparison:
        lines.append("")
        lines.append("Against the paper (written from the numbers above):")
        lines.extend(f"- {line}" for line in comparison)
    beyond = extended_lines(result)
    if beyond:
        lines.append("")
        lines.append(f"Beyond the paper (DeepMerge, data seed "
                     f"{result['extended']['deepmerge']['data_seed']}; every row in the "
                     "extended table beside Table 1 in `reports/paper/`):")
        lines.extend(f"- {line}" for line in beyond)
    made = result.get("provenance")
    if made and made["records"]:
        versions = "; ".join(f"{k} {', '.join(v)}" for k, v in made["versions"].items())
        lines.append("")
        if len(made["paths"]) == 1:  # one machine and precision path for every row
            where = " " + _paths_text(made)
        else:
            where = ": " + "; ".join(
                f"{BACKBONE_LABELS[b]}, " + (_paths_text(m) if len(m["paths"]) > 1 else
                                             f"{_runs(m['records'])} ({m['wall_hours']:.1f} h) "
                                             + _paths_text(m))
                for b, m in made.get("backbones", {}).items())
        lines.append(f"Made by `python analysis/paper_study.py` (Table 1: "
                     f"{_runs(made['records'])}, {made['wall_hours']:.1f} h of summed trial "
                     f"wall time){where}; {versions}.")
    return "\n".join(lines) + "\n"


def extended_lines(result: dict[str, Any], backbone: str = "deepmerge") -> list[str]:
    """Plain statements from a backbone's extended table (what README shows under Table 1).

    Each only where its rows have records: the controls against no-DA and MMD / DANN against
    joint-BN (paired, 95 % intervals); each oracle against MMD and DANN over the seeds the
    three share, and the shares of its gap (the source + target oracle: also its source change
    against no-DA's, beside MMD's and DANN's, where its interval is below zero); the classical
    baseline; the newer methods, the best by mean target accuracy paired against MMD. Words
    follow the numbers:

    * the gain is said to come "from the transfer loss" only when MMD and DANN both beat
      joint-BN with intervals above zero and every control's mean Δ against no-DA is below
      half of MMD's and of DANN's over the same seeds;
    * an oracle is "below", "level with" or "above" MMD and DANN by the one-decimal values
      the sentence prints; the target-trained oracle is said to do worse than DA only when
      it is below both with paired intervals under zero and both shares of its gap exceed
      100 %.
    """
    table = result["extended"].get(backbone)
    if not table:
        return []
    rows = {r["arm"]: r for r in table["arms"] if not r.get("missing")}

    def vs(name: str, ref: str, domain: str = "target") -> dict[str, Any] | None:
        return (rows[name]["vs"].get(ref) or {}).get(domain) if name in rows else None

    out = []
    controls = [c for c in CONTROL_ARMS if vs(c, "none")]
    if controls:
        text = ", ".join(f"{SHORT[c]} {_delta(vs(c, 'none'))} ({_seeds(vs(c, 'none')['seeds'])})"
                         for c in controls)
        line = f"Controls, target points against no-DA: {text}."
        beats = {a: vs(a, "jointbn") for a in ("mmd", "dann")}
        if all(beats.values()):
            line += " Against joint-BN: " + ", ".join(
                f"{SHORT[a]} {_delta(b)} ({_seeds(b['seeds'])})" for a, b in beats.items())
            seeds = sorted(set.intersection(*(set(vs(c, "none")["seeds"]) for c in controls))
                           & set(rows["mmd"]["seeds"]) & set(rows["dann"]["seeds"]))
            floor = _mean_over(rows["none"], "target", seeds) if seeds else math.nan
            gains = [_mean_over(rows[a], "target", seeds) - floor for a in beats] if seeds else []
            biggest = max(_mean_over(rows[c], "target", seeds) - floor for c in controls) \
                if seeds else math.nan
            if (gains and all(b["ci_low"] > 0 for b in beats.values())
                    and biggest < 0.5 * min(gains)):
                line += (": the gain comes from the transfer loss; over "
                         f"{_seeds(seeds)} no control gives more than {biggest:+.1f} points, "
                         f"MMD {gains[0]:+.1f} and DANN {gains[1]:+.1f}.")
            else:
                line += "."
        out.append(line)
    for ceiling in CEILINGS:
        if ceiling not in rows or not {"mmd", "dann"} <= set(rows):
            continue
        common = [s for s in rows[ceiling]["seeds"]
                  if s in rows["mmd"]["seeds"] and s in rows["dann"]["seeds"]]
        if not common:
            continue
        top, mmd, dann = (round(_mean_over(rows[a], "target", common), 1)
                          for a in (ceiling, "mmd", "dann"))
        where = ("below both" if top < min(mmd, dann) else "above both" if top > max(mmd, dann)
                 else "level with one of them" if top in (mmd, dann) else "between them")
        line = (f"{SHORT[ceiling][0].upper()}{SHORT[ceiling][1:]} reaches {top:.1f} % on the "
                f"target against MMD's {mmd:.1f} and DANN's {dann:.1f} ({_seeds(common)}): "
                f"{where}")
        shares = {a: (rows[a].get(f"{ceiling}_gap") or {}).get("share") for a in ("mmd", "dann")}
        below = [vs(a, ceiling) for a in ("mmd", "dann")]
        if (ceiling == "oracle" and where == "below both"
                and all(v is not None and v > 1 for v in shares.values())
                and all(d is not None and d["ci_low"] > 0 for d in below)):
            line += (f"; MMD and DANN beat it by {_delta(below[0])} and {_delta(below[1])} "
                     "points (paired) and close "
                     f"{100 * shares['mmd']:.0f} and {100 * shares['dann']:.0f} % of its gap: "
                     "with target labels alone the network does worse than with source labels "
                     "and DA")
        elif ceiling != "oracle" and all(v is not None for v in shares.values()):
            line += (f"; MMD closes {100 * shares['mmd']:.0f} % and DANN "
                     f"{100 * shares['dann']:.0f} % of the no-DA → {SHORT[ceiling][4:]} gap")
        source = {a: vs(a, "none", "source") for a in (ceiling, "mmd", "dann")}
        if ceiling == "oracleboth" and all(source.values()) and source[ceiling]["ci_high"] < 0:
            line += (f". Trained on both domains' labels, it too loses source accuracy against "
                     f"no-DA: {_delta(source[ceiling])} points "
                     f"({_seeds(source[ceiling]['seeds'])}; MMD {_delta(source['mmd'])}, "
                     f"{_seeds(source['mmd']['seeds'])}; DANN {_delta(source['dann'])}, "
                     f"{_seeds(source['dann']['seeds'])})")
        out.append(line + ".")
    for baseline in (b.name for b in baseline_specs() if b.joins == backbone):
        if vs(baseline, "none"):
            name = SHORT.get(baseline, baseline)
            out.append(f"{name[0].upper()}{name[1:]} reaches "
                       f"{_mean_std(rows[baseline]['target'])} % on the target "
                       f"({_seeds(rows[baseline]['seeds'])}), {_delta(vs(baseline, 'none'))} "
                       "points against no-DA.")
    newer = [a for a in NEWER_ARMS if a in rows]
    if newer:
        best = max(newer, key=lambda a: rows[a]["target"]["mean"])
        listed = ", ".join(f"{SHORT[a]} {_mean_std(rows[a]['target'])}" for a in newer)
        line = f"Newer methods, target accuracy (%): {listed}"
        against = vs(best, "mmd")
        if against:
            which = f"the best, {SHORT[best]}," if len(newer) > 1 else SHORT[best]
            line += (f"; {which} against MMD: {_delta(against)} points "
                     f"({_seeds(against['seeds'])})")
        out.append(line + ".")
    return out


def _share(share: dict[str, Any] | None) -> str:
    """``"36 % (seeds 1, 2)"``, or empty where there is no share (see :func:`gap_share`)."""
    if share is None or share["share"] is None:
        return ""
    return f"{100 * share['share']:.0f} % ({_seeds(share['seeds'])})"


def extended_markdown(result: dict[str, Any]) -> str:
    """The extended table of every backbone with records."""
    out = []
    for backbone, table in result["extended"].items():
        out.append(f"### {BACKBONE_LABELS[backbone]}, held-out data seed {table['data_seed']}\n")
        ceilings = [c for c in CEILINGS if c in {row["arm"] for row in table["arms"]}]
        out.append("| arm | seeds | source (%) | target (%) | target Δ vs no-DA | "
                   "target Δ vs joint-BN | "
                   + "".join(f"{CEILING_COLUMNS[c]} | " for c in ceilings).rstrip())
        out.append("| --- " * (6 + len(ceilings)) + "|")
        for row in table["arms"]:
            if row.get("missing"):
                out.append((f"| `{row['arm']}` | not run yet | | | | | "
                            + "| " * len(ceilings)).rstrip())
                continue
            out.append(
                f"| {row['label']} | {', '.join(map(str, row['seeds']))} | "
                f"{_mean_std(row['source'])} | {_mean_std(row['target'])} | "
                f"{_delta((row['vs'].get('none') or {}).get('target'), row['seeds'])} | "
                f"{_delta((row['vs'].get('jointbn') or {}).get('target'), row['seeds'])} | "
                + "".join(f"{_share(row.get(f'{c}_gap'))} | " for c in ceilings).rstrip())
        if backbone == "resnet18":
            out.append("")
            out.append("ResNet18's joint-BN and oracle rows: one training seed on a CPU (what "
                       "the issue allows there), as many as its paper rows on a GPU; a Δ "
                       "against joint-BN pairs only the seeds both have (named).")
        out.append("")
    out.append("Δ: paired difference (points) over the training seeds both arms have, with its "
               "95 % cluster-bootstrap interval over test galaxies. Share of the gap: "
               "(target accuracy − no-DA's) / (the oracle's − no-DA's), seed means over the "
               "seeds the three share, none where the oracle is less than "
               f"{100 * ORACLE_MIN_GAP:.0f} points above no-DA; the oracle is trained on "
               "target labels alone, the source + target oracle on the labels of both domains "
               "pooled (meant as ceilings, never used for a choice; the latter's epoch is one "
               "pass over both training splits, so it takes twice the steps). Every "
               "network's configuration is a committed search's pick (controls and the "
               "oracles: the no-DA search's); the classical baseline has no search: gradient "
               "boosting with the fixed parameters of `training/classical.py` on statmorph and "
               "layout features.")
    return "\n".join(out) + "\n"


def figure1(reports: Path, result: dict[str, Any]):
    """Figure 1 of the paper for both backbones on the first held-out data seed.

    Each row: metric bars (mean ± std over seeds; source hatched, target solid; bar containers
    labelled ``"<backbone> <arm> <domain>"``) and the target-test ROC of every seed.
    """
    from matplotlib.patches import Patch

    from analysis.figures import finish_roc_axes, new_figure
    from analysis.tables import METRIC_LABELS

    figure = new_figure(15, 10)
    axes = figure.subplots(2, 2, width_ratios=[2.3, 1])
    data_seed = result["data_seeds"][0] if result["data_seeds"] else None
    for row_axes, backbone in zip(axes, BACKBONES, strict=True):
        bars, roc = row_axes
        arms = load_backbone(reports, data_seed, backbone) if data_seed is not None else {}
        present = [a for a in PAPER_ARMS if a in arms]
        width = 0.8 / (2 * max(len(present), 1))
        x = np.arange(len(METRIC_NAMES))
        for j, name in enumerate(present):
            summary, color = arm_summary(arms[name]), arm_color(arms[name])
            left = x - 0.4 + 2 * j * width + width / 2
            for domain, offset, style in (("source", 0, {"facecolor": "white",
                                                         "edgecolor": color, "hatch": "///"}),
                                          ("target", width, {"color": color})):
                stats = [summary[f"{domain}_metrics"].get(m) for m in METRIC_NAMES]
                means = [s["mean"] if s else np.nan for s in stats]
                errs = [s["std"] if s and math.isfinite(s["std"]) else 0.0 for s in stats]
                bars.bar(left + offset, means, width, yerr=errs, capsize=2,
                         label=f"{backbone} {name} {domain}", **style)
        bars.set_xticks(x, [METRIC_LABELS[m] for m in METRIC_NAMES])
        handles = [Patch(color=arm_color(arms[a]), label=ARM_LABELS[a]) for a in present]
        handles += [Patch(facecolor="white", edgecolor="0.3", hatch="///", label="source"),
                    Patch(color="0.3", label="target")]
        bars.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8,
                    frameon=False)
        bars.set_ylim(0, 1.15)
        bars.grid(axis="y", alpha=0.3)
        title = f"{BACKBONE_LABELS[backbone]}: test metrics (source hatched, target solid)"
        if not present:
            bars.text(0.5, 0.5, "no records yet", transform=bars.transAxes, ha="center",
                      fontsize=14, color="0.5")
        bars.set_title(title, fontsize=10)
        roc.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
        for name in present:
            arm = arms[name]
            for k, seed in enumerate(arm.seeds):
                curve = (read_json(reports / "seeds" / f"data{data_seed}" / backbone / name
                                   / f"seed_{seed}" / "roc.json") or {}).get("target_test")
                if curve:
                    roc.plot(curve["fpr"], curve["tpr"], color=arm_color(arm), linewidth=0.8,
                             alpha=0.7, label=ARM_LABELS[name] if k == 0 else None)
        finish_roc_axes(roc, f"{BACKBONE_LABELS[backbone]}: target test ROC, every seed")
    return figure


def update_readme(readme: Path, markdown: str, start: str = README_START,
                  end: str = README_END) -> None:
    """Replace the block between ``start`` and ``end`` (default Table 1's markers)."""
    text = readme.read_text()
    if start not in text or end not in text.split(start, 1)[1]:
        raise HeadlineError(f"{readme}: no {start!r} ... {end!r} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + start + "\n" + markdown + end + tail)


def readme_block(readme: Path, start: str = README_START, end: str = README_END) -> str:
    """The text between the markers ``start`` and ``end`` (what ``--readme`` wrote).

    Raises:
        HeadlineError: the file or its block is missing.
    """
    try:
        text = readme.read_text()
    except OSError as exc:
        raise HeadlineError(f"{readme}: unreadable ({exc.strerror})") from None
    if start not in text or end not in text.split(start, 1)[1]:
        raise HeadlineError(f"{readme}: no {start!r} ... {end!r} block. Fix: add the two "
                            "marker lines where the block should go")
    return text.split(start, 1)[1].split(end, 1)[0].lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``analysis/paper_tables.py``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="analysis/paper_tables.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=Path, default=Path("reports/paper"),
                        help="the study's committed records (default reports/paper)")
    parser.add_argument("--readme", type=Path, action="append", default=[], metavar="FILE",
                        help="rewrite Table 1's block in this file (repeatable)")
    args = parser.parse_args(argv)
    try:
        if not args.reports.is_dir():
            raise HeadlineError(f"--reports {args.reports}: no such folder. Fix: pass the "
                                "study's reports folder (default reports/paper)")
        for readme in args.readme:  # every block exists before anything is written
            readme_block(readme)
        result = build(args.reports)
        if result["schedule_violations"]:
            raise HeadlineError("runs stopped before their schedule ended:\n  "
                                + "\n  ".join(result["schedule_violations"]))
        table1 = table1_markdown(result)
        (args.reports / "table1.md").write_text(table1)
        (args.reports / "extended.md").write_text(extended_markdown(result))
        (args.reports / "paper_tables.json").write_text(json.dumps(result, indent=1) + "\n")
        from analysis.figures import save_figure

        save_figure(figure1(args.reports, result), args.reports / "figure1")
        for readme in args.readme:
            update_readme(readme, table1)
    except HeadlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table1, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
