r"""The headline table: every arm of the protocol on a held-out data seed, from committed records.

The protocol (``benchmarks/results/protocol-and-headline.md``, "Protocol of every headline
figure"): development data seeds (:data:`DEVELOPMENT_DATA_SEEDS`) for choosing anything;
headline figures on a held-out data seed (:data:`HELD_OUT_DATA_SEEDS`) that no choice ever read;
at least :data:`MIN_TRAINING_SEEDS` training seeds per arm, the same seeds for every arm; mean ±
sample std over seeds and, against the reference arms (no-DA and the joint-BN control), the
paired difference averaged over seeds with its 95 % cluster-bootstrap interval
(:func:`analysis.compare.paired_difference_over_seeds`).

Two steps::

    python analysis/headline.py collect --runs runs/headline --out reports/headline
    python analysis/headline.py table --records reports/headline \
        --readme benchmarks/results/protocol-and-headline.md

``collect`` copies, for every seed study under ``--runs/seeds/`` and every registered baseline
under ``--runs/<baseline>/`` (the classical one: ``--runs/classical/``), each seed's
``record.json``, ``roc.json`` and ``predictions.npz`` (never a checkpoint) into
``--out/records/<arm>/seed_<S>/``. ``table`` reads only those copies, writes ``headline.json``,
``headline.md`` (Table 1 of the headline) and ``figure1.{png,pdf}`` (:func:`figure1`) beside
them and, with ``--readme``, rewrites the block between :data:`README_START` and
:data:`README_END` (``tests/test_headline.py`` checks that block against the records). Arms
are ordered, labelled and coloured by their method's or baseline's spec
(:mod:`training.registry`). Nothing is rerun.

Exit status: 0 done; 2 bad input (no records, a failed seed, unequal seeds, wrong data seed).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.compare import CompareError, paired_difference_over_seeds
from training.record import PREDICTIONS, RECORD, read_json, write_json, write_text
from training.registry import baseline_names, get_baseline, get_method, method_names

DEVELOPMENT_DATA_SEEDS = (1, 2)  #: data seeds any choice may read (validation splits only)
#: Data seeds of headline figures, never read by a choice (3: the 2026-12-01 headline; 11 and
#: 12: the paper-scale study of issue 25, analysis/paper_study.py; 21: the shift atlas of
#: issue 26, analysis/shift_atlas.py).
HELD_OUT_DATA_SEEDS = (3, 11, 12, 21)
MIN_TRAINING_SEEDS = 3
DOMAINS = ("source", "target")
#: Table order of the method arms (folders under ``records/``), after the registered baselines
#: (:func:`arm_order`); others follow, alphabetically.
ARM_ORDER = ("none", "none-perdomain", "adabn", "jointbn", "mmd", "dann")
#: The arms every other arm is compared with (if present).
REFERENCES = ("none", "jointbn")
README_START = "<!-- headline:start (written by analysis/headline.py; checked by tests) -->"
README_END = "<!-- headline:end -->"
N_BOOT = 2000
BOOT_SEED = 0
FILES = (RECORD, "roc.json", PREDICTIONS)


class HeadlineError(ValueError):
    """Records that cannot make a headline table (exit status 2)."""


@dataclass
class Arm:
    """One row of the table: a method (or baseline) trained with several seeds.

    Attributes:
        name: folder name under ``records/`` (``none``, ``none-perdomain``, ``mmd``, …).
        label: row label.
        seeds: training seeds, ascending.
        records: the seeds' records, in seed order.
        correct: ``{domain: bool [S, N]}`` per-seed correctness on the test images.
        groups: ``{domain: galaxy_id [N]}``.
    """

    name: str
    label: str
    seeds: list[int]
    records: list[dict[str, Any]]
    correct: dict[str, np.ndarray]
    groups: dict[str, np.ndarray]

    def accuracy(self, domain: str) -> np.ndarray:
        """Per-seed test accuracy of ``domain`` ([S])."""
        return self.correct[domain].mean(axis=1)


def arm_order() -> tuple[str, ...]:
    """Arm names in table order: the baselines (registry order), then :data:`ARM_ORDER`."""
    return (*baseline_names(), *ARM_ORDER)


def arm_name(record: dict[str, Any]) -> str:
    """``<method>`` plus ``-perdomain`` for per-domain normalisation (a baseline's name as is)."""
    method = record.get("method") or "?"
    config = record.get("config") or {}
    return method + ("-perdomain" if config.get("normalization") == "per_domain" else "")


def arm_label(record: dict[str, Any]) -> str:
    """Row label of a record's arm (from its method's or baseline's spec)."""
    method = record.get("method")
    if method in baseline_names():
        return get_baseline(method).label
    label = get_method(method).label if method in method_names() else str(method)
    if method == "dann":
        label = "adversarial (DANN)"
    if (record.get("config") or {}).get("normalization") == "per_domain":
        label += " + per-domain norm"
    return label


def collect(runs: str | Path, out: str | Path) -> list[Path]:
    """Copy every seed's record, ROC and predictions under ``runs`` into ``out/records``.

    Reads ``runs/seeds/<study>/seed_<S>/`` and ``runs/<baseline>/seed_<S>/`` of every registered
    baseline; the arm of each seed comes from its record (:func:`arm_name`). Existing copies are
    replaced.

    Raises:
        HeadlineError: nothing found, or a seed whose record is missing or not ``ok``.
    """
    runs, out = Path(runs), Path(out)
    folders = sorted(runs.glob("seeds/*/seed_*"))
    for baseline in baseline_names():
        folders += sorted(runs.glob(f"{baseline}/seed_*"))
    if not folders:
        raise HeadlineError(f"{runs}: no seeds/<study>/seed_<S> or <baseline>/seed_<S> folder "
                            f"(baselines: {', '.join(baseline_names())}). Fix: run "
                            "benchmarks/headline.sh first")
    staged: list[tuple[Path, Path]] = []
    for folder in folders:
        record = read_json(folder / RECORD)
        if record is None or record.get("status") != "ok":
            status = None if record is None else record.get("status")
            raise HeadlineError(f"{folder}: record missing or not ok (status {status!r}). "
                                "Fix: rerun that seed (benchmarks/headline.sh resumes)")
        staged.append((folder, out / "records" / arm_name(record) / folder.name))
    written = []
    for source, target in staged:
        target.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, target / name)
                written.append(target / name)
    return written


def load_arms(records: str | Path) -> list[Arm]:
    """Every arm under ``records/records/``, in :func:`arm_order` (:func:`load_arm_folders`)."""
    return load_arm_folders(Path(records) / "records")


def load_arm_folders(root: str | Path) -> list[Arm]:
    """Every arm under ``root`` (``root/<arm>/seed_<S>/``), in :func:`arm_order`.

    Raises:
        HeadlineError: no arm, a seed without predictions, or test images that differ.
    """
    root, order = Path(root), arm_order()
    names = sorted((p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else [],
                   key=lambda n: (order.index(n) if n in order else len(order), n))
    if not names:
        raise HeadlineError(f"{root}: no arm folder. Fix: run `analysis/headline.py collect`")
    arms, reference_groups = [], None
    for name in names:
        folders = sorted((p for p in (root / name).glob("seed_*") if p.name[5:].isdigit()),
                         key=lambda p: int(p.name[5:]))
        records, correct, groups = [], {d: [] for d in DOMAINS}, {}
        for folder in folders:
            record = read_json(folder / RECORD)
            if record is None or record.get("status") != "ok":
                raise HeadlineError(f"{folder}: record missing or not ok")
            if record.get("seed") != int(folder.name[5:]) or arm_name(record) != name:
                raise HeadlineError(f"{folder}: holds the record of {arm_name(record)} seed "
                                    f"{record.get('seed')}, not of its folder. Fix: copy "
                                    "records with analysis/headline.py collect")
            try:
                with np.load(folder / PREDICTIONS) as archive:
                    for domain in DOMAINS:
                        p = archive[f"{domain}_test_p_merger"]
                        labels = archive[f"{domain}_test_label"].astype(bool)
                        correct[domain].append((p >= 0.5) == labels)
                        ids = archive[f"{domain}_test_galaxy_id"]
                        if domain in groups and not np.array_equal(groups[domain], ids):
                            raise HeadlineError(f"{folder}: other {domain} test images")
                        groups[domain] = ids
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                if isinstance(exc, HeadlineError):
                    raise
                raise HeadlineError(f"{folder}/{PREDICTIONS} unreadable ({exc})") from exc
            records.append(record)
        if reference_groups is None:
            reference_groups = groups
        for domain in DOMAINS:
            if not np.array_equal(groups[domain], reference_groups[domain]):
                raise HeadlineError(f"arm {name} was scored on other {domain} test images "
                                    "than the others. Fix: run every arm on one benchmark")
        arms.append(Arm(name, arm_label(records[0]), [int(f.name[5:]) for f in folders],
                        records, {d: np.stack(correct[d]) for d in DOMAINS}, groups))
    return arms


def check_protocol(arms: list[Arm]) -> dict[str, Any]:
    """The protocol facts of the records; raise if they break it.

    Raises:
        HeadlineError: a data seed that is not held out, another generator version or data
            folder between arms, fewer than :data:`MIN_TRAINING_SEEDS` seeds, or seeds that
            differ between arms.
    """
    data = {(r["data"]["dir"], r["data"]["source_attrs"].get("seed"),
             r["data"]["source_attrs"].get("generator_version"))
            for arm in arms for r in arm.records}
    if len(data) != 1:
        raise HeadlineError(f"the records come from several benchmarks: {sorted(data)}")
    data_dir, data_seed, version = data.pop()
    if data_seed not in HELD_OUT_DATA_SEEDS:
        raise HeadlineError(f"data seed {data_seed} is not a held-out seed "
                            f"{HELD_OUT_DATA_SEEDS}. Fix: simulate a held-out seed")
    seeds = {tuple(arm.seeds) for arm in arms}
    if len(seeds) != 1:
        raise HeadlineError(f"arms have different training seeds: "
                            f"{ {arm.name: arm.seeds for arm in arms} }")
    training_seeds = list(seeds.pop())
    if len(training_seeds) < MIN_TRAINING_SEEDS:
        raise HeadlineError(f"{len(training_seeds)} training seeds; the protocol needs "
                            f">= {MIN_TRAINING_SEEDS}")
    return {"data_dir": data_dir, "data_seed": data_seed, "generator_version": version,
            "training_seeds": training_seeds,
            "development_data_seeds": list(DEVELOPMENT_DATA_SEEDS),
            "held_out_data_seeds": list(HELD_OUT_DATA_SEEDS)}


def headline(records: str | Path) -> dict[str, Any]:
    """The headline numbers of the records under ``records`` (see the module docstring)."""
    arms = load_arms(records)
    protocol = check_protocol(arms)
    by_name = {arm.name: arm for arm in arms}
    rows = []
    for arm in arms:
        row: dict[str, Any] = {"arm": arm.name, "label": arm.label, "seeds": arm.seeds}
        for domain in DOMAINS:
            acc = arm.accuracy(domain)
            row[f"{domain}_per_seed"] = [float(a) for a in acc]
            row[f"{domain}_mean"] = float(acc.mean())
            row[f"{domain}_std"] = float(acc.std(ddof=1)) if len(acc) > 1 else math.nan
        row["vs"] = {}
        for reference in REFERENCES:
            if reference not in by_name or reference == arm.name:
                continue
            base = by_name[reference]
            try:
                row["vs"][reference] = {
                    domain: paired_difference_over_seeds(
                        base.correct[domain], arm.correct[domain], arm.groups[domain],
                        N_BOOT, BOOT_SEED)
                    for domain in DOMAINS}
            except CompareError as exc:
                raise HeadlineError(str(exc)) from exc
        rows.append(row)
    return {"protocol": protocol, "n_test_images": {d: int(arms[0].correct[d].shape[1])
                                                    for d in DOMAINS},
            "n_test_galaxies": {d: int(len(np.unique(arms[0].groups[d]))) for d in DOMAINS},
            "bootstrap": {"n": N_BOOT, "seed": BOOT_SEED}, "arms": rows}


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _delta(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return ""
    return (f"{100 * comparison['delta']:+.1f} [{100 * comparison['ci_low']:+.1f}, "
            f"{100 * comparison['ci_high']:+.1f}]")


def format_markdown(result: dict[str, Any]) -> str:
    """The README table of :func:`headline`'s result (what the test compares)."""
    p = result["protocol"]
    seeds = ", ".join(map(str, p["training_seeds"]))
    header = (f"| DeepMerge, generator v{p['generator_version']}, held-out data seed "
              f"{p['data_seed']}, test accuracy (%), mean ± std over training seeds {seeds} "
              "| source | target | source Δ vs no-DA | target Δ vs no-DA "
              "| target Δ vs joint-BN |")
    lines = [header, "| --- | --- | --- | --- | --- | --- |"]
    for row in result["arms"]:
        vs = row["vs"]
        lines.append(
            f"| {row['label']} | {_pct(row['source_mean'], row['source_std'])} "
            f"| {_pct(row['target_mean'], row['target_std'])} "
            f"| {_delta((vs.get('none') or {}).get('source'))} "
            f"| {_delta((vs.get('none') or {}).get('target'))} "
            f"| {_delta((vs.get('jointbn') or {}).get('target'))} |")
    n_img, n_gal = result["n_test_images"], result["n_test_galaxies"]
    lines.append("")
    lines.append(f"Δ: paired difference averaged over the {len(p['training_seeds'])} training "
                 "seeds, with its 95 % cluster-bootstrap interval over test galaxies "
                 f"({n_img['target']} target test images of {n_gal['target']} galaxies; "
                 "`analysis/headline.py`).")
    return "\n".join(lines) + "\n"


ARM_COLORS = {"none-perdomain": "#DA8BC3"}  #: arms that are no spec of their own


def arm_color(arm: Arm) -> str:
    """The colour of the arm's method or baseline spec (per-domain norm has its own)."""
    if arm.name in ARM_COLORS:
        return ARM_COLORS[arm.name]
    method = arm.records[0].get("method")
    if method in baseline_names():
        return get_baseline(method).color
    return get_method(method).color if method in method_names() else "0.5"


def table_backbone(record: dict[str, Any]) -> str:
    """The backbone whose tables list a record: its own, or the one its baseline ``joins``."""
    method = record.get("method")
    return get_baseline(method).joins if method in baseline_names() else record.get("backbone")


def figure1(records: str | Path):
    """Figure 1 of the headline: test accuracy per arm and the target-test ROC curves.

    Left: mean ± std over seeds, every seed as a dot, source hatched and target solid. Right:
    the target-test ROC of every seed of every arm.

    Bar containers are labelled ``"<arm> <domain>"`` so that tests can read the heights back.
    """
    from analysis.figures import finish_roc_axes, new_figure

    arms = load_arms(records)
    figure = new_figure(14, 5.2)
    bars, roc = figure.subplots(1, 2, width_ratios=[1.6, 1])
    x = np.arange(len(arms))
    for domain, shift, style in (("source", -0.2, {"facecolor": "white", "hatch": "///"}),
                                 ("target", 0.2, {})):
        for i, arm in enumerate(arms):
            acc = arm.accuracy(domain)
            color = arm_color(arm)
            kwargs = ({"edgecolor": color, **style} if style else {"color": color})
            bars.bar(x[i] + shift, acc.mean(), 0.38, yerr=acc.std(ddof=1) if len(acc) > 1
                     else None, capsize=3, label=f"{arm.name} {domain}", **kwargs)
            bars.scatter(np.full(len(acc), x[i] + shift), acc, s=10, color="k", zorder=3)
            bars.text(x[i] + shift, acc.mean() + 0.03, f"{100 * acc.mean():.1f}",
                      ha="center", fontsize=7, rotation=90)
    bars.set_xticks(x, [arm.label.replace(": ", ":\n").replace(" + ", "\n+ ")
                        for arm in arms], fontsize=7)
    bars.set_ylim(0.4, 1.08)
    bars.set_ylabel("test accuracy (mean ± std over training seeds)")
    bars.grid(axis="y", alpha=0.3)
    bars.set_title("held-out data seed: source hatched, target solid", fontsize=10)
    roc.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
    for arm in arms:
        for k, seed in enumerate(arm.seeds):
            curve = (read_json(Path(records) / "records" / arm.name / f"seed_{seed}" /
                               "roc.json") or {}).get("target_test")
            if curve:
                roc.plot(curve["fpr"], curve["tpr"], color=arm_color(arm), linewidth=1,
                         alpha=0.8, label=arm.label if k == 0 else None)
    finish_roc_axes(roc, "target test ROC, every training seed")
    return figure


def update_readme(readme: str | Path, markdown: str) -> None:
    """Replace the block between :data:`README_START` and :data:`README_END` in ``readme``.

    Raises:
        HeadlineError: the markers are missing.
    """
    readme = Path(readme)
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise HeadlineError(f"{readme}: no {README_START!r} ... {README_END!r} block. Fix: "
                            "add the two marker lines where the table goes")
    new = text[: start + len(README_START)] + "\n" + markdown + text[end:]
    write_text(readme, new)


def readme_block(readme: str | Path) -> str:
    """The text between the markers of ``readme`` (what :func:`update_readme` wrote)."""
    text = Path(readme).read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise HeadlineError(f"{readme}: no headline block")
    return text[start + len(README_START) + 1 : end]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="copy the records of headline runs into --out")
    c.add_argument("--runs", required=True, help="folder of benchmarks/headline.sh (OUT)")
    c.add_argument("--out", required=True, help="report folder, e.g. reports/headline")
    t = sub.add_parser("table", help="headline.json/.md from collected records")
    t.add_argument("--records", required=True, help="report folder written by collect")
    t.add_argument("--readme", default=None, help="also rewrite this file's headline block")
    args = parser.parse_args(argv)
    try:
        if args.command == "collect":
            written = collect(args.runs, args.out)
            print(f"copied {len(written)} files into {Path(args.out) / 'records'}")
            return 0
        result = headline(args.records)
        markdown = format_markdown(result)
        write_json(Path(args.records) / "headline.json", result)
        write_text(Path(args.records) / "headline.md", markdown)
        from analysis.figures import save_figure

        save_figure(figure1(args.records), Path(args.records) / "figure1")
        if args.readme:
            update_readme(args.readme, markdown)
    except (HeadlineError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
