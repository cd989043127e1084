"""The paper at full scale (issue 25): one resumable command, stage by stage.

Usage::

    python analysis/paper_study.py                  # every stage below, resuming finished work
    python analysis/paper_study.py --dry-run        # the commands, nothing run
    python analysis/paper_study.py --only mmd_deepmerge dann_deepmerge

Stages (each one the documented CLI, run as a subprocess; rerunning skips what is finished):

1. **Development data**: generator v4, development data seed 2, 3000 mergers (600 systems) +
   2700 non-mergers (``data/benchmark-v4-seed2-dev``), simulated when missing. Every choice of
   the study (search, selection) reads its *validation* splits only.
2. **Searches**, as the paper did: DeepHyper CBO with successive halving (``--stopper sha``),
   the default label-free objective, the paper budget (30 full epochs; the stopping rule of
   ``training.config``'s default), two trials at a time: :data:`SEARCHES` trials per problem
   (DeepMerge no-DA, MMD, DANN: 30; ResNet18 MMD, DANN: 10 on a CPU).
3. **Search records** under ``--reports/searches/<problem>/``: ``results.csv``, ``search.json``
   and every trial's ``record.json`` (JSON only, no checkpoint), plus ``selection.json``: the
   label-free pick against the oracle pick (highest *target validation* accuracy, read for
   reporting only, never for a choice) and their gap.
4. **Held-out data at the paper's size** (8120 mergers = 1624 systems x 5, 7306 non-mergers,
   70/10/20): data seeds :data:`HELD_OUT` (never read by a choice), simulated when missing.
5. **Table 1's DeepMerge rows**: each DeepMerge search's label-free pick trained with
   training seeds 1..N on each held-out data seed (10 on the first, 3 on the second), seed
   by seed across the three problems and both data seeds so that a stopped run leaves
   balanced rows; each
   finished seed's record, per-image test predictions and thinned ROC curves are copied to
   ``--reports/seeds/data<D>/<backbone>/<arm>/seed_<S>/`` (:func:`collect_seed`).
6. The ResNet18 searches (after the DeepMerge rows: they cost the most).
7. Table 1, the extended table and Figure 1 from the committed copies
   (``analysis/paper_tables.py``; a run stopped before its schedule ended is refused).

Training folders (checkpoints included) go to ``--runs`` (default ``runs/paper``, ignored by
git); the command commits nothing. Exit status: 0 every stage done; 1 a stage failed; 2 bad
arguments; 130 interrupted (Ctrl-C: one line; rerunning resumes).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = "data/benchmark-v4-seed2-dev"
DEV_SIMULATION = ("--n-mergers", "3000", "--n-nonmergers", "2700", "--seed", "2")
#: Trials per search (DeepMerge as the issue asks, ResNet18 at the CPU's least).
SEARCHES = {"none_deepmerge": 30, "mmd_deepmerge": 30, "dann_deepmerge": 30,
            "mmd_resnet": 10, "dann_resnet": 10}
#: Held-out data seed -> training seeds of the DeepMerge rows on it (analysis.headline's
#: HELD_OUT_DATA_SEEDS lists them, so no search or study may run on them).
HELD_OUT = {11: 10, 12: 3}
PAPER_SIZE = ("--n-mergers", "8120", "--n-nonmergers", "7306")
DEEPMERGE = ("none_deepmerge", "mmd_deepmerge", "dann_deepmerge")
ROC_POINTS = 200  #: points kept of each committed ROC curve (:func:`thin_roc`)
SEARCH_ARGS = ("--budget", "paper", "--stopper", "sha", "--search", "cbo", "--seed", "42",
               "--evaluator", "process")


def search_command(problem: str, runs: Path, data: str, workers: int) -> list[str]:
    """The ``search/run.py`` command of one problem's search (``--resume``: skips done work)."""
    return [sys.executable, "search/run.py", "--problem", problem, "--data", data,
            "--log-dir", str(runs / "search" / problem), "--max-evals", str(SEARCHES[problem]),
            *SEARCH_ARGS, "--workers", str(workers), "--resume", "--quiet"]


def held_out_dir(seed: int) -> str:
    """The folder of a held-out data seed at the paper's size."""
    return f"data/benchmark-v4-seed{seed}-heldout-paper"


def seed_jobs(runs: Path) -> list[tuple[str, int, int, list[str]]]:
    """``(problem, data seed, training seed, command)`` of Table 1's DeepMerge rows.

    Seed-major across the held-out data seeds: training seed 1 of every problem on every data
    seed, then seed 2, ...; so the first rounds give both data seeds their three seeds before
    the first data seed goes on to ten.
    """
    jobs = []
    for seed in range(1, max(HELD_OUT.values()) + 1):
        for data_seed, n_seeds in HELD_OUT.items():
            if seed > n_seeds:
                continue
            for problem in DEEPMERGE:
                jobs.append((problem, data_seed, seed, [
                    sys.executable, "search/seeds.py", "--problem", problem, "--from-search",
                    str(runs / "search" / problem), "--seeds", str(n_seeds), "--only-seed",
                    str(seed), "--data", held_out_dir(data_seed), "--out",
                    str(runs / "seeds" / f"data{data_seed}" / problem), "--workers", "1",
                    "--evaluator", "serial", "--quiet"]))
    return jobs


def run_seed_jobs(jobs: list, runs: Path, reports: Path, workers: int) -> int:
    """Run the jobs ``workers`` at a time (one torch thread each); copy each finished record."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    env = {**os.environ, "OMP_NUM_THREADS": "1"} if workers > 1 else None

    def one(job) -> int:
        problem, data_seed, seed, command = job
        study = REPO / runs / "seeds" / f"data{data_seed}" / problem
        record = study / f"seed_{seed}" / "record.json"
        if not record.is_file():
            log = REPO / runs / "logs" / f"seeds_data{data_seed}_{problem}_{seed}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as handle:
                code = subprocess.call(command, cwd=REPO, stdout=handle,
                                       stderr=subprocess.STDOUT, env=env)
            print(f"{problem} data seed {data_seed} seed {seed}: exit {code}", flush=True)
            if code != 0 or not record.is_file():
                return 1
        collect_seed(record.parent, reports)
        return 0

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return max([0, *pool.map(one, jobs)])


def selection_gap(log_dir: Path) -> dict[str, Any]:
    """The label-free pick of a search against its oracle pick (target validation labels).

    Both picks are among the trials that ran the whole schedule (``ok``); the gap is the
    oracle's target validation accuracy minus the label-free pick's, in points.
    """
    from search.results import load_search
    from search.selection import rank_trials

    frame = load_search(log_dir)
    picks = {}
    for name, strategy in (("label_free", "search"), ("oracle", "target_val_accuracy")):
        ranked = rank_trials(frame, strategy)
        if ranked.empty:
            raise ValueError(f"{log_dir}: no trial ran the whole schedule")
        row = ranked.iloc[0]
        picks[name] = {"job_id": int(row["job_id"]), "score": float(row["score"]),
                       **{f"{d}_val_accuracy": 100 * float(row[f"{d}_val_accuracy"])
                          for d in ("source", "target")}}
    counts = frame["status"].value_counts().to_dict()
    return {"trials": len(frame), "status_counts": {k: int(v) for k, v in counts.items()},
            "label_free_strategy": "search (the search's own objective)",
            "oracle_strategy": "target_val_accuracy (reporting only)", **picks,
            "gap_target_val_points": picks["oracle"]["target_val_accuracy"]
            - picks["label_free"]["target_val_accuracy"]}


def data_names() -> dict[str, str]:
    """Each data folder of the study, resolved, -> the name the committed records use.

    A linked ``data/`` (a worktree sharing another checkout's data) resolves outside the
    repository; the records name the folder as the repository does.
    """
    names = [DEV_DATA, *(held_out_dir(seed) for seed in HELD_OUT)]
    return {str((REPO / name).resolve()): name for name in names}


def portable_copy(source: Path, target: Path) -> None:
    """Copy a JSON record, writing the study's data folders by their repository names."""
    names = data_names()

    def portable(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: portable(v) for k, v in value.items()}
        if isinstance(value, list):
            return [portable(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(portable(json.loads(source.read_text())), indent=1) + "\n")


def seed_folder(reports: Path, record: dict[str, Any]) -> Path:
    """``reports/seeds/data<D>/<backbone>/<arm>/seed_<S>``: where a seed's copies go.

    ``<arm>`` is :func:`analysis.headline.arm_name` (the method, ``-perdomain`` for per-domain
    normalisation), so that :func:`analysis.headline.load_arm_folders` reads the folder.
    """
    from analysis.headline import arm_name

    data_seed = record["data"]["source_attrs"]["seed"]
    return (reports / "seeds" / f"data{data_seed}" / record["backbone"] / arm_name(record)
            / f"seed_{record['seed']}")


def thin_roc(curves: dict[str, Any], max_points: int = ROC_POINTS) -> dict[str, Any]:
    """The test-split ROC curves, each cut to at most ``max_points`` points for plotting.

    Points are kept at evenly spaced indices of the threshold-ordered curve (both ends kept);
    the AUC of a table always comes from the record's metrics, never from this curve.
    """
    out = {}
    for name, curve in curves.items():
        if not name.endswith("_test"):
            continue
        n = len(curve["fpr"])
        keep = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, max_points))})
        out[name] = {key: [round(float(curve[key][i]), 6) for i in keep]
                     for key in ("fpr", "tpr")}
    return out


def collect_seed(trial: Path, reports: Path) -> Path:
    """Copy one finished seed's ``record.json``, ``predictions.npz`` and thinned ``roc.json``.

    Never a checkpoint. The record's data folders are written by their repository names
    (:func:`portable_copy`). Returns the folder written.

    Raises:
        ValueError: the trial has no ``ok`` record.
    """
    from training.record import PREDICTIONS, RECORD, ROC

    record = json.loads((trial / RECORD).read_text())
    if record.get("status") != "ok":
        raise ValueError(f"{trial}: record status {record.get('status')!r}, not ok")
    out = seed_folder(reports, record)
    out.mkdir(parents=True, exist_ok=True)
    portable_copy(trial / RECORD, out / RECORD)
    shutil.copyfile(trial / PREDICTIONS, out / PREDICTIONS)
    (out / ROC).write_text(json.dumps(thin_roc(json.loads((trial / ROC).read_text()))) + "\n")
    return out


def collect_seeds(runs: Path, reports: Path) -> list[Path]:
    """:func:`collect_seed` for every finished seed under ``runs/seeds/data*/*/seed_*``."""
    from training.record import RECORD

    written = []
    for record in sorted((runs / "seeds").glob(f"data*/*/seed_*/{RECORD}")):
        if json.loads(record.read_text()).get("status") == "ok":
            written.append(collect_seed(record.parent, reports))
    return written


def copy_search(log_dir: Path, out: Path) -> None:
    """``results.csv``, ``search.json`` and each trial's ``record.json`` (no checkpoints)."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(log_dir / "results.csv", out / "results.csv")
    portable_copy(log_dir / "search.json", out / "search.json")
    for record in sorted((log_dir / "trials").glob("*/record.json")):
        portable_copy(record, out / "trials" / record.parent.name / "record.json")
    (out / "selection.json").write_text(json.dumps(selection_gap(log_dir), indent=1) + "\n")


def searches_table(reports: Path) -> str:
    """Markdown: each committed search's label-free pick, its oracle pick and the gap."""
    lines = ["| search (development data seed 2) | trials (ran to the end) | label-free pick: "
             "job, lr, batch, λ_TL | its source / target validation accuracy (%) | oracle pick: "
             "job, target validation (%) | selection gap (points) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for problem in SEARCHES:
        folder = reports / "searches" / problem
        if not (folder / "selection.json").is_file():
            continue
        gap = json.loads((folder / "selection.json").read_text())
        pick = gap["label_free"]
        config = json.loads((folder / "trials" / str(pick["job_id"]) / "record.json"
                             ).read_text())["config"]
        lines.append(
            f"| `{problem}` | {gap['trials']} ({gap['status_counts'].get('ok', 0)}) | "
            f"{pick['job_id']}, {config['lr']:.2g}, {config['batch_size']}, "
            f"{config['lambda_tl']:.2g} | {pick['source_val_accuracy']:.1f} / "
            f"{pick['target_val_accuracy']:.1f} | {gap['oracle']['job_id']}, "
            f"{gap['oracle']['target_val_accuracy']:.1f} | {gap['gap_target_val_points']:.1f} |")
    return "\n".join(lines) + "\n"


def run(command: list[str], log: Path | None = None) -> int:
    """Run one stage's command from the repository root; its output to ``log`` if given."""
    print("$ " + shlex.join(c if c != sys.executable else "python" for c in command), flush=True)
    if log is None:
        return subprocess.call(command, cwd=REPO)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        return subprocess.call(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``analysis/paper_study.py``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="analysis/paper_study.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/paper"),
                        help="training folders (default runs/paper)")
    parser.add_argument("--reports", type=Path, default=Path("reports/paper"),
                        help="committed records and tables (default reports/paper)")
    parser.add_argument("--only", nargs="+", choices=list(SEARCHES), metavar="PROBLEM",
                        help="these problems only")
    parser.add_argument("--workers", type=int, default=2, help="trials at once (default 2)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    problems = args.only or list(SEARCHES)
    runs, reports = REPO / args.runs, REPO / args.reports  # an absolute path stays itself
    simulate = [sys.executable, "galaxies/simulate.py", "--out", DEV_DATA, *DEV_SIMULATION,
                "--workers", str(args.workers), "--quiet"]
    searches = {p: search_command(p, args.runs, DEV_DATA, args.workers) for p in problems}
    held_out = {seed: [sys.executable, "galaxies/simulate.py", "--out", held_out_dir(seed),
                       *PAPER_SIZE, "--seed", str(seed), "--workers", str(args.workers),
                       "--quiet"] for seed in HELD_OUT}
    jobs = [job for job in seed_jobs(args.runs) if job[0] in problems]
    if args.dry_run:
        first = [searches[p] for p in problems if p in DEEPMERGE]
        last = [searches[p] for p in problems if p not in DEEPMERGE]
        for command in (simulate, *first, *held_out.values(), *(j[3] for j in jobs), *last):
            print(shlex.join(c if c != sys.executable else "python" for c in command))
        return 0
    status = 0
    if not (REPO / DEV_DATA / "target.h5").is_file() and run(simulate) != 0:
        return 1

    def deepmerge_rows() -> int | None:
        """Held-out data (simulated when missing), then Table 1's DeepMerge rows."""
        for command in held_out.values():
            if not (REPO / command[command.index("--out") + 1] / "target.h5").is_file() \
                    and run(command):
                return None
        return run_seed_jobs(jobs, args.runs, reports, args.workers)

    order = [p for p in problems if p in DEEPMERGE] + [p for p in problems if p not in DEEPMERGE]
    for problem in order:
        if problem not in DEEPMERGE and jobs:  # Table 1's DeepMerge rows before ResNet18
            code = deepmerge_rows()
            if code is None:
                return 1
            status, jobs = max(status, code), []
        command = searches[problem]
        tick = time.monotonic()
        code = run(command, runs / f"search_{problem}.log")
        print(f"search {problem}: exit {code} after {(time.monotonic() - tick) / 60:.1f} min",
              flush=True)
        if code != 0:
            status = 1
            continue
        copy_search(runs / "search" / problem, reports / "searches" / problem)
    if jobs:  # --only without a ResNet18 search: the DeepMerge rows now
        code = deepmerge_rows()
        if code is None:
            return 1
        status = max(status, code)
    from analysis import paper_tables  # every table and figure from the records so far

    print("$ python analysis/paper_tables.py --reports " + str(args.reports), flush=True)
    return max(status, paper_tables.main(["--reports", str(reports)]))


def _main_interruptible(argv: list[str] | None = None) -> int:
    """:func:`main`, with Ctrl-C as one line and exit status 130 (the stages resume)."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(_main_interruptible())
