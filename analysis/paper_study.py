"""The paper at full scale (issue 25): one resumable command, stage by stage.

Usage::

    python analysis/paper_study.py                  # every stage below, resuming finished work
    python analysis/paper_study.py --dry-run        # the commands, nothing run
    python analysis/paper_study.py --only none_deepmerge mmd_deepmerge dann_deepmerge
    python analysis/paper_study.py --searches-only --only coral_deepmerge cdan_deepmerge
    python analysis/paper_study.py --profile gpu --runs /tmp/runs --reports /tmp/reports \
        --deadline-min 7                            # one H100-class GPU (benchmarks/gpu_study.sh)

Stages (each one the documented CLI, run as a subprocess; rerunning skips what is finished):

1. **Development data**: generator v4, development data seed 2, 3000 mergers (600 systems) +
   2700 non-mergers (``data/benchmark-v4-seed2-dev``), simulated when missing. Every choice of
   the study (search, selection) reads its *validation* splits only.
2. **Searches**, as the paper did: DeepHyper CBO with successive halving (``--stopper sha``),
   the default label-free objective, the paper budget (30 full epochs; the stopping rule of
   ``training.config``'s default): :data:`SEARCHES` trials per problem (DeepMerge no-DA, MMD,
   DANN: 30; the five newer DeepMerge methods and ResNet18 no-DA, MMD, DANN: 10 on a CPU).
   Each search's records go to ``--reports/searches/<problem>/`` (``results.csv``,
   ``search.json``, every trial's ``record.json``, no checkpoint) with ``selection.json``:
   the label-free pick against the oracle pick (highest *target validation* accuracy, read
   for reporting only, never for a choice) and their gap.
3. **Held-out data at the paper's size** (8120 mergers = 1624 systems x 5, 7306 non-mergers,
   70/10/20): data seeds :data:`HELD_OUT` (never read by a choice), simulated when missing.
4. **Table 1's DeepMerge rows**: each DeepMerge search's label-free pick trained with
   training seeds 1..N on each held-out data seed (10 on the first, 3 on the second), seed
   by seed across the three problems and both data seeds so that a stopped run leaves
   balanced rows.
5. **The extended DeepMerge table** on the first held-out data seed, seeds 1-3
   (:data:`EXTENDED_SEEDS`; the five newer methods' searches run first, since the shift
   atlas takes its newer method from them): the controls and the oracles with the no-DA
   search's pick (``search/seeds.py --shared-config``: a control differs from no-DA in the one
   thing it controls) — joint-BN, per-domain normalisation, the target-trained oracle and the
   source + target oracle — AdaBN (re-scores the no-DA seeds' networks), the classical
   baseline, and CORAL, MMD+FE, DANN+FE, CDAN and SIDDA with their own searches' picks.
6. **ResNet18**: no-DA, MMD and DANN with their searches' picks (the profile's
   ``resnet_seeds``: 3 on a CPU, 10 on a GPU), joint-BN and the oracle with the no-DA
   search's pick (one seed on a CPU, as the issue allows; as many as the rows on a GPU).
7. Table 1, the extended table and Figure 1 from the committed copies
   (``analysis/paper_tables.py``; a run stopped before its schedule ended is refused); with
   the default ``--reports`` also README's and ``benchmarks/results/paper-scale.md``'s
   "Results at a glance" block (:data:`README_DOCS`).

Every finished seed's record, per-image test predictions and thinned ROC curves are copied to
``--reports/seeds/data<D>/<backbone>/<arm>/seed_<S>/`` (:func:`collect_seed`), and each search
to ``--reports/searches/<problem>/`` (:func:`copy_search`). Training folders (checkpoints
included) go to ``--runs`` (default ``runs/paper``, ignored by git); the command commits
nothing. **Resuming reads the committed copies**: a search whose copy holds all its trials is
not rerun, every seed trains the pick of its search's *committed copy* (so what is trained is
what the reports show), and a seed whose committed record is ``ok`` is not retrained, so a
fresh clone or another machine (the GPU script) goes on where the commits end. A search
stopped before its last trial (``--deadline-min``, an error) is copied too, without
``selection.json``: no seed trains its pick yet, and the next run lays it back
(:func:`restore_search`) and continues it with ``--resume`` rather than starting again, so a
search longer than one session survives a change of machine. (AdaBN
re-scores the no-DA seed's network, which only its training folder holds: it runs where
that seed was trained.)

Profiles (:data:`PROFILES`): ``cpu`` runs two trials at a time with one torch thread each, in
the order above (the DeepMerge rows first: ResNet18 costs the most); ``gpu`` packs
:data:`GPU_PACK` trials on one GPU as that many processes on the device (the searches' process
evaluator and the seed pool: Ray's wheel alone is larger than what the device tool carries,
so the Ray evaluator's ``--gpus-per-trial 1/K`` packing is for a cluster, ``jobs/``), ResNet18
first (what a CPU cannot do), and ten ResNet18 seeds.
``--deadline-min M`` starts nothing after M minutes (a search gets the time left as its
``--timeout``; one with less than a minute left is not started); whatever still runs
:data:`GRACE_S` seconds after the deadline is stopped (it resumes on the next run), and the
tables are built from what finished.

Exit status: 0 every stage done; 1 a stage failed or the deadline left work undone; 2 bad
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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = "data/benchmark-v4-seed2-dev"
DEV_SIMULATION = ("--n-mergers", "3000", "--n-nonmergers", "2700", "--seed", "2")
DEEPMERGE = ("none_deepmerge", "mmd_deepmerge", "dann_deepmerge")
#: The newer DeepMerge methods of the extended table, each with its own search.
NEWER = ("coral_deepmerge", "mmdfe_deepmerge", "dannfe_deepmerge", "cdan_deepmerge",
         "sidda_deepmerge")
RESNET = ("none_resnet", "mmd_resnet", "dann_resnet")
#: Trials per search (DeepMerge's paper methods as the issue asks, the rest at the CPU's least).
SEARCHES = {**{p: 30 for p in DEEPMERGE}, **{p: 10 for p in NEWER}, **{p: 10 for p in RESNET}}
#: Held-out data seed -> training seeds of the DeepMerge rows on it (analysis.headline's
#: HELD_OUT_DATA_SEEDS lists them, so no search or study may run on them).
HELD_OUT = {11: 10, 12: 3}
EXTENDED_SEEDS = 3  #: training seeds of the extended table (first held-out data seed)
#: Controls and the oracles: trained with the no-DA search's pick (``--shared-config``).
#: DeepMerge also gets the source + target oracle (``training/methods/oracleboth.py``).
CONTROLS = {"deepmerge": ("jointbn_deepmerge", "oracle_deepmerge", "oracleboth_deepmerge"),
            "resnet18": ("jointbn_resnet", "oracle_resnet")}
PAPER_SIZE = ("--n-mergers", "8120", "--n-nonmergers", "7306")
ROC_POINTS = 200  #: points kept of each committed ROC curve (:func:`thin_roc`)
SEARCH_ARGS = ("--budget", "paper", "--stopper", "sha", "--search", "cbo", "--seed", "42")
GPU_PACK = 8  #: trials at once on one GPU in the ``gpu`` profile
GRACE_S = 60  #: a running trial may overrun the deadline by this much before it is stopped
MIN_SEARCH_S = 60  #: a search is not started with less time than this left
#: The documents whose "Results at a glance" block the tables refresh (default reports only).
README_DOCS = ("README.md", "benchmarks/results/paper-scale.md")


@dataclass(frozen=True)
class Profile:
    """How the study uses the machine.

    Attributes:
        name: ``cpu`` or ``gpu``.
        workers: trials at once.
        search_runner: ``search/run.py`` flags that place the trials.
        seed_sets: ``--set`` items of every seed trial (the device).
        resnet_seeds: training seeds of ResNet18's rows (and of its controls).
        resnet_first: ResNet18 before the DeepMerge stages.
    """

    name: str
    workers: int
    search_runner: tuple[str, ...]
    seed_sets: tuple[str, ...]
    resnet_seeds: int
    resnet_first: bool


PROFILES = {
    "cpu": Profile("cpu", 2, ("--evaluator", "process", "--workers", "2"), (), 3, False),
    "gpu": Profile("gpu", GPU_PACK, ("--evaluator", "process", "--workers", str(GPU_PACK),
                                     "--set", "device=cuda"), ("device=cuda",), 10, True),
}


@dataclass
class Job:
    """One seed trial (or the classical baseline's seeds) of a seed stage.

    Attributes:
        label: what the log and progress lines call it.
        command: the subprocess; ``None`` until :attr:`prepare` builds it (AdaBN needs the
            finished no-DA seed's configuration).
        records: the ``record.json`` files that exist once the job is done.
        log: its output file.
        prepare: builds the command when the job starts (else ``None``).
        committed: where :func:`collect_seed` copies the records (``--reports``).
    """

    label: str
    command: list[str] | None
    records: list[Path]
    log: Path
    prepare: Any = None
    committed: list[Path] = field(default_factory=list)

    def done(self) -> bool:
        """Every record of the job says ``ok``, under ``--runs`` or as committed copies.

        A committed copy (``--reports``, :func:`committed_seed`) counts: a fresh clone or
        another machine resumes the study without retraining what is already in ``reports/``.
        A failed or stopped trial is run again, resuming from its ``resume.pt`` if it has one.
        """
        if all(_record_ok(record) for record in self.records):
            return True
        return bool(self.committed) and all(_record_ok(record) for record in self.committed)


def _record_ok(path: Path) -> bool:
    """``path`` is a readable record whose status is ``ok``."""
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class Stage:
    """A step of the study: simulate data, one search, or a pool of seed jobs.

    Attributes:
        kind: ``simulate``, ``search`` or ``seeds``.
        name: what the log calls it.
        commands: the commands of a ``simulate`` or ``search`` stage.
        jobs: the jobs of a ``seeds`` stage.
        done_when: a file whose existence means a ``simulate`` stage is done.
        problem: a search stage's problem (its records are copied to the reports).
    """

    kind: str
    name: str
    commands: list[list[str]] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    done_when: Path | None = None
    problem: str | None = None


def search_command(problem: str, runs: Path, data: str, profile: Profile,
                   timeout: float | None = None) -> list[str]:
    """The ``search/run.py`` command of one problem's search (``--resume``: skips done work)."""
    return [sys.executable, "search/run.py", "--problem", problem, "--data", data,
            "--log-dir", str(runs / "search" / problem), "--max-evals", str(SEARCHES[problem]),
            *SEARCH_ARGS, *profile.search_runner, "--resume", "--quiet",
            *(["--timeout", str(int(timeout))] if timeout is not None else [])]


def held_out_dir(seed: int) -> str:
    """The folder of a held-out data seed at the paper's size."""
    return f"data/benchmark-v4-seed{seed}-heldout-paper"


def committed_seed(reports: Path, data_seed: int, problem: str, seed: int,
                   per_domain: bool = False) -> Path:
    """Where :func:`collect_seed` puts the record of ``problem``'s training seed ``seed``.

    :func:`seed_folder` of the record the trial will write, known before the trial exists
    (a baseline's name is its method).
    """
    from problems import get_problem
    from training.record import RECORD
    from training.registry import baseline_names

    if problem in baseline_names():
        method, backbone = problem, None
    else:
        spec = get_problem(problem)
        method, backbone = spec.method, spec.backbone
    record = {"method": method, "backbone": backbone, "seed": seed,
              "config": {"normalization": "per_domain" if per_domain else "source"},
              "data": {"source_attrs": {"seed": data_seed}}}
    return seed_folder(reports, record) / RECORD


def seed_job(problem: str, data_seed: int, seed: int, n_seeds: int, runs: Path,
             profile: Profile, search: str | None = None, study: str | None = None,
             sets: tuple[str, ...] = (), reports: Path = Path("reports/paper")) -> Job:
    """Training seed ``seed`` (of ``n_seeds``) of ``problem`` on a held-out data seed.

    ``search`` is the search whose pick is trained (default: ``problem``'s own; another
    problem's means ``--shared-config``), read from its committed copy
    (``reports/searches/<search>``, :func:`copy_search`): what is trained is what the reports
    show, on this machine or a fresh clone. ``study`` names the seed folder (default the
    problem), ``sets`` are extra ``--set`` items (per-domain normalisation).
    """
    search = search or problem
    study = study or problem
    out = runs / "seeds" / f"data{data_seed}" / study
    command = [sys.executable, "search/seeds.py", "--problem", problem, "--from-search",
               str(reports / "searches" / search),
               *(["--shared-config"] if search != problem else []),
               "--seeds", str(n_seeds), "--only-seed", str(seed), "--data", held_out_dir(data_seed),
               "--out", str(out), "--workers", "1", "--evaluator", "serial", "--quiet",
               *(x for item in (*profile.seed_sets, *sets) for x in ("--set", item))]
    return Job(f"{study} data seed {data_seed} seed {seed}", command,
               [out / f"seed_{seed}" / "record.json"],
               runs / "logs" / f"seeds_data{data_seed}_{study}_{seed}.log",
               committed=[committed_seed(reports, data_seed, problem, seed,
                                         "normalization=per_domain" in sets)])


def seed_jobs(runs: Path, profile: Profile = PROFILES["cpu"],
              reports: Path = Path("reports/paper")) -> list[Job]:
    """Table 1's DeepMerge rows.

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
                jobs.append(seed_job(problem, data_seed, seed, n_seeds, runs, profile,
                                     reports=reports))
    return jobs


def adabn_job(data_seed: int, seed: int, runs: Path, profile: Profile,
              data: str | None = None, reports: Path = Path("reports/paper")) -> Job:
    """AdaBN: the no-DA seed's network re-scored with target BatchNorm statistics.

    AdaBN trains exactly as no-DA does (``tests/test_controls.py``), so it re-scores the
    finished no-DA seed (``training/train.py --from-trial``) with that seed's configuration.
    """
    source = runs / "seeds" / f"data{data_seed}" / "none_deepmerge" / f"seed_{seed}"
    out = runs / "seeds" / f"data{data_seed}" / "adabn_deepmerge" / f"seed_{seed}"

    def prepare() -> list[str]:
        from problems import get_problem

        if not (source / "record.json").is_file():
            raise FileNotFoundError(
                f"{source}: AdaBN re-scores this no-DA seed's network, which only a training "
                "folder holds (checkpoints are not committed). Fix: rerun the study where that "
                "seed was trained, or move its committed copy out of reports/ to retrain it")
        config = json.loads((source / "record.json").read_text())["config"]
        defaults = get_problem("adabn_deepmerge").defaults.to_dict()
        sets = [f"{k}={v}" for k, v in config.items()  # what the no-DA pick changed
                if k not in ("method", "backbone", "seed") and v != defaults.get(k)]
        return [sys.executable, "training/train.py", "--problem", "adabn_deepmerge",
                "--data", data or held_out_dir(data_seed), "--seed", str(seed), "--from-trial",
                str(source), "--out", str(out), "--quiet",
                *(x for item in sets for x in ("--set", item))]

    return Job(f"adabn_deepmerge data seed {data_seed} seed {seed}", None,
               [out / "record.json"], runs / "logs" / f"seeds_data{data_seed}_adabn_{seed}.log",
               prepare, [committed_seed(reports, data_seed, "adabn_deepmerge", seed)])


def extended_jobs(runs: Path, profile: Profile,
                  reports: Path = Path("reports/paper")) -> list[Job]:
    """The extended DeepMerge table's seeds on the first held-out data seed (seed-major).

    The classical baseline (one job for its seeds, the longest of the stage: statmorph on
    every image) comes first, so that it runs beside the networks' seeds instead of alone at
    the stage's end with the other workers idle.
    """
    data_seed = next(iter(HELD_OUT))
    jobs = []
    out = runs / "seeds" / f"data{data_seed}" / "classical"
    jobs.append(Job(f"classical data seed {data_seed}", [
        sys.executable, "training/classical.py", "--data", held_out_dir(data_seed), "--out",
        str(out), "--seeds", str(EXTENDED_SEEDS), "--workers", "1", "--quiet"],
        [out / f"seed_{s}" / "record.json" for s in range(1, EXTENDED_SEEDS + 1)],
        runs / "logs" / f"classical_data{data_seed}.log",
        committed=[committed_seed(reports, data_seed, "classical", s)
                   for s in range(1, EXTENDED_SEEDS + 1)]))
    for seed in range(1, EXTENDED_SEEDS + 1):
        jobs += [seed_job(p, data_seed, seed, EXTENDED_SEEDS, runs, profile,
                          search="none_deepmerge", reports=reports)
                 for p in CONTROLS["deepmerge"]]
        jobs.append(seed_job("none_deepmerge", data_seed, seed, EXTENDED_SEEDS, runs, profile,
                             study="none_deepmerge-perdomain",
                             sets=("normalization=per_domain",), reports=reports))
        jobs.append(adabn_job(data_seed, seed, runs, profile, reports=reports))
    return jobs


def newer_jobs(runs: Path, profile: Profile,
               reports: Path = Path("reports/paper")) -> list[Job]:
    """The five newer methods' seeds with their own searches' picks (seed-major)."""
    data_seed = next(iter(HELD_OUT))
    return [seed_job(p, data_seed, seed, EXTENDED_SEEDS, runs, profile, reports=reports)
            for seed in range(1, EXTENDED_SEEDS + 1) for p in NEWER]


def resnet_jobs(runs: Path, profile: Profile,
                reports: Path = Path("reports/paper")) -> list[Job]:
    """ResNet18's Table 1 rows, then its joint-BN and oracle rows (seed-major)."""
    data_seed = next(iter(HELD_OUT))
    n_seeds = profile.resnet_seeds
    jobs = [seed_job(p, data_seed, seed, n_seeds, runs, profile, reports=reports)
            for seed in range(1, n_seeds + 1) for p in RESNET]
    n_controls = n_seeds if profile.name == "gpu" else 1
    jobs += [seed_job(p, data_seed, seed, n_controls, runs, profile, search="none_resnet",
                      reports=reports)
             for seed in range(1, n_controls + 1) for p in CONTROLS["resnet18"]]
    return jobs


def plan(runs: Path, profile: Profile, problems: list[str],
         reports: Path = Path("reports/paper")) -> list[Stage]:
    """Every stage of the study in the profile's order (``problems`` filters searches/seeds)."""
    simulate = Stage("simulate", "development data", [[
        sys.executable, "galaxies/simulate.py", "--out", DEV_DATA, *DEV_SIMULATION,
        "--workers", str(max(profile.workers, 2)), "--quiet"]],
        done_when=REPO / DEV_DATA / "target.h5")
    held_out = [Stage("simulate", f"held-out data seed {seed}", [[
        sys.executable, "galaxies/simulate.py", "--out", held_out_dir(seed), *PAPER_SIZE,
        "--seed", str(seed), "--workers", str(max(profile.workers, 2)), "--quiet"]],
        done_when=REPO / held_out_dir(seed) / "target.h5") for seed in HELD_OUT]

    def searches(group: tuple[str, ...]) -> list[Stage]:
        return [Stage("search", f"search {p}", [search_command(p, runs, DEV_DATA, profile)],
                      problem=p) for p in group if p in problems]

    def seeds(name: str, jobs: list[Job]) -> list[Stage]:
        kept = [j for j in jobs if _job_problem(j) in problems]
        return [Stage("seeds", name, jobs=kept)] if kept else []

    # The newer methods' searches right after Table 1's DeepMerge rows: the shift atlas
    # (analysis/shift_atlas.py) takes its newer method from them.
    deepmerge = [*searches(DEEPMERGE), *held_out,
                 *seeds("Table 1: DeepMerge rows", seed_jobs(runs, profile, reports)),
                 *searches(NEWER),
                 # one pool: a worker freed by the controls goes on to a newer method's seed
                 *seeds("extended table: controls, AdaBN, classical, oracles, newer methods",
                        [*extended_jobs(runs, profile, reports),
                         *newer_jobs(runs, profile, reports)])]
    resnet = [*searches(RESNET)]
    resnet += seeds("Table 1: ResNet18 rows, joint-BN, oracle",
                    resnet_jobs(runs, profile, reports))
    if profile.resnet_first:
        return [simulate, *held_out, *resnet, *deepmerge]
    return [simulate, *deepmerge, *resnet]


def _job_problem(job: Job) -> str:
    """The problem (or ``classical``) a job trains: the name ``--only`` filters on.

    Controls and the oracle belong to the search whose pick they train, AdaBN and per-domain
    normalisation to ``none_deepmerge``, the classical baseline to ``none_deepmerge``.
    """
    command = job.command or []
    if "--from-search" in command:
        return Path(command[command.index("--from-search") + 1]).name
    return "none_deepmerge"


def run_jobs(jobs: list[Job], reports: Path, workers: int, deadline: float | None,
             collect: Callable[[Path], Any] | None = None) -> int:
    """Run the jobs ``workers`` at a time; ``collect`` each finished trial folder.

    ``collect`` defaults to :func:`collect_seed` into ``reports``.

    Each job gets ``cores // workers`` torch threads (``OMP_NUM_THREADS``, at least one).

    A job already done is only copied (nothing, when only its committed copy exists). After
    ``deadline`` (``time.monotonic()``) no job starts; the undone ones count as a failure
    (exit 1: rerun to resume).
    """
    import os
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(text, flush=True)

    def one(job: Job) -> int:
        try:
            if not job.done():
                if deadline is not None and time.monotonic() > deadline:
                    return 1
                command = job.command or job.prepare()
                job.log.parent.mkdir(parents=True, exist_ok=True)
                limit = None if deadline is None else deadline - time.monotonic() + GRACE_S
                with job.log.open("a") as handle:
                    process = subprocess.Popen(command, cwd=REPO, stdout=handle,
                                               stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True)
                    try:
                        code = process.wait(timeout=limit)
                    except subprocess.TimeoutExpired:  # past the deadline: stop, resume later
                        os.killpg(process.pid, signal.SIGTERM)
                        code = process.wait()
                        say(f"{job.label}: stopped at the deadline (rerun to resume)")
                say(f"{job.label}: exit {code}")
                if code != 0 or not job.done():
                    return 1
            for record in job.records:  # none when only the committed copies exist
                if _record_ok(record):
                    (collect or (lambda trial: collect_seed(trial, reports)))(record.parent)
            return 0
        except (OSError, ValueError, KeyError) as exc:  # a missing input, an unusable record
            say(f"{job.label}: not run ({type(exc).__name__}: {exc})")
            return 1

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
    """Each data folder under ``data/``, resolved, -> the name the committed records use.

    A linked ``data/`` (a worktree sharing another checkout's data) resolves outside the
    repository; the records name the folder as the repository does.
    """
    names = [DEV_DATA, *(held_out_dir(seed) for seed in HELD_OUT)]
    if (REPO / "data").is_dir():
        names += [f"data/{p.name}" for p in (REPO / "data").iterdir() if p.is_dir()]
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
    normalisation), so that :func:`analysis.headline.load_arm_folders` reads the folder; the
    classical baseline (no network) sits with the arms of the backbone its spec joins
    (:func:`analysis.headline.table_backbone`).
    """
    from analysis.headline import arm_name, table_backbone

    data_seed = record["data"]["source_attrs"]["seed"]
    return (reports / "seeds" / f"data{data_seed}" / table_backbone(record) / arm_name(record)
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
    from training.record import RECORD

    record = json.loads((trial / RECORD).read_text())
    if record.get("status") != "ok":
        raise ValueError(f"{trial}: record status {record.get('status')!r}, not ok")
    return copy_seed(trial, seed_folder(reports, record))


def copy_seed(trial: Path, out: Path) -> Path:
    """``record.json`` (portable), ``predictions.npz`` and thinned ``roc.json`` into ``out``."""
    from training.record import PREDICTIONS, RECORD, ROC

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


def committed_search_done(copy: Path, problem: str) -> bool:
    """``copy`` (:func:`copy_search`'s folder) holds the whole search.

    That is ``selection.json`` and :data:`SEARCHES` trials in ``results.csv``; the search's
    stage is then skipped (a fresh clone, the GPU script).
    """
    if not (copy / "selection.json").is_file() or not (copy / "results.csv").is_file():
        return False
    return search_rows(copy) >= SEARCHES.get(problem, 1)


def search_rows(log_dir: Path) -> int:
    """The rows (trials) of ``log_dir/results.csv`` (0 without one)."""
    import csv

    if not (log_dir / "results.csv").is_file():
        return 0
    with (log_dir / "results.csv").open(newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def copy_search(log_dir: Path, out: Path, partial: bool = False) -> None:
    """``results.csv``, ``search.json`` and each trial's ``record.json`` (no checkpoints).

    A finished search also gets ``selection.json`` (:func:`selection_gap`). ``partial``: a
    search stopped before its last trial (the deadline, a stop): its completed trials are
    copied *without* ``selection.json``, so that the copy is not taken for a finished search
    (:func:`committed_search_done`, :func:`search_complete`) and another machine continues it
    (:func:`restore_search`) instead of starting again.
    """
    out.mkdir(parents=True, exist_ok=True)
    if partial:
        (out / "selection.json").unlink(missing_ok=True)
    shutil.copy2(log_dir / "results.csv", out / "results.csv")
    portable_copy(log_dir / "search.json", out / "search.json")
    for record in sorted((log_dir / "trials").glob("*/record.json")):
        portable_copy(record, out / "trials" / record.parent.name / "record.json")
    if not partial:
        (out / "selection.json").write_text(json.dumps(selection_gap(log_dir), indent=1)
                                            + "\n")


def restore_search(copy: Path, log_dir: Path) -> bool:
    """Lay a committed partial search (:func:`copy_search`) into an empty log folder.

    ``search/run.py --resume`` then reloads its completed trials from ``results.csv`` (none is
    rerun; the data are checked by identity, not by path) and runs the rest: a search longer
    than one session on a machine that is not kept goes on where its last commit ends. A
    log folder that already holds anything (this machine's own results, or trials it was
    running: their job ids could clash with the copy's) is left alone. Returns whether
    anything was laid.
    """
    used = log_dir.is_dir() and any(log_dir.iterdir())
    if used or not (copy / "results.csv").is_file():
        return False
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in ("search.json", "results.csv"):  # results.csv last: it marks the folder used
        shutil.copy2(copy / name, log_dir / name)
    for record in sorted((copy / "trials").glob("*/record.json")):
        (log_dir / "trials" / record.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, log_dir / "trials" / record.parent.name / "record.json")
    return True


def search_complete(job: Job) -> bool:
    """The search whose pick ``job`` trains (``--from-search``) is committed whole.

    A job that trains no search's pick (the classical baseline, AdaBN) counts as complete.
    """
    command = job.command or []
    if "--from-search" not in command:
        return True
    copy = Path(command[command.index("--from-search") + 1])
    return committed_search_done(copy if copy.is_absolute() else REPO / copy, copy.name)


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


def run(command: list[str], log: Path | None = None, timeout: float | None = None) -> int:
    """Run one stage's command from the repository root; its output to ``log`` if given.

    After ``timeout`` seconds the command's process group gets SIGTERM (a search stops its
    trials and keeps what finished; rerunning resumes) and the exit status is returned.
    """
    import os
    import signal

    print("$ " + shlex.join(c if c != sys.executable else "python" for c in command), flush=True)
    handle = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("a")
    try:
        process = subprocess.Popen(command, cwd=REPO, stdout=handle,
                                   stderr=subprocess.STDOUT if handle else None,
                                   start_new_session=timeout is not None)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            print(f"stopped at the deadline: {command[1]} (rerun to resume)", flush=True)
            return process.wait()
    finally:
        if handle is not None:
            handle.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``analysis/paper_study.py``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="analysis/paper_study.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/paper"),
                        help="training folders (default runs/paper)")
    parser.add_argument("--reports", type=Path, default=Path("reports/paper"),
                        help="committed records and tables (default reports/paper)")
    parser.add_argument("--only", nargs="+", choices=list(SEARCHES), metavar="PROBLEM",
                        help="these searches and the seeds trained with their picks only")
    parser.add_argument("--profile", choices=list(PROFILES), default="cpu",
                        help="cpu (default: 2 trials at once, one thread each) or gpu "
                        f"({GPU_PACK} trials packed on one GPU, ResNet18 first)")
    parser.add_argument("--workers", type=int, default=None,
                        help="trials at once (default: the profile's)")
    parser.add_argument("--deadline-min", type=float, default=None, metavar="M",
                        help="start nothing after M minutes, then build the tables")
    parser.add_argument("--searches-only", action="store_true",
                        help="only the searches (and the data they need): e.g. the five newer "
                        "methods' searches before the shift atlas, which takes its newer "
                        "method from them")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.workers is not None:
        if args.workers < 1:
            parser.error("--workers must be >= 1")
        profile = replace(profile, workers=args.workers, search_runner=_with_workers(
            profile.search_runner, args.workers))
    if args.deadline_min is not None and not args.deadline_min > 0:
        parser.error("--deadline-min must be > 0")
    problems = args.only or list(SEARCHES)
    runs, reports = REPO / args.runs, REPO / args.reports  # an absolute path stays itself
    stages = plan(args.runs, profile, problems, args.reports)
    if args.searches_only:
        stages = [st for st in stages if st.kind == "search" or st.name == "development data"]
    docs = README_DOCS if reports.resolve() == (REPO / "reports" / "paper").resolve() else ()
    tables_args = ["analysis/paper_tables.py", "--reports", str(args.reports),
                   *(x for doc in docs for x in ("--readme", doc))]
    if args.dry_run:
        for stage in stages:
            for command in stage.commands or [j.command or ["(prepared when it starts)",
                                                            j.label] for j in stage.jobs]:
                print(shlex.join(c if c != sys.executable else "python" for c in command))
        print(shlex.join(["python", *tables_args]))
        return 0
    deadline = (time.monotonic() + 60 * args.deadline_min
                if args.deadline_min is not None else None)
    status = 0
    for stage in stages:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            print(f"deadline: {stage.name} and later stages not started", flush=True)
            status = 1
            break
        tick = time.monotonic()
        if stage.kind == "simulate":
            if not stage.done_when.is_file() and run(stage.commands[0]) != 0:
                return 1
        elif stage.kind == "search":
            if committed_search_done(reports / "searches" / stage.problem, stage.problem):
                print(f"{stage.name}: committed ({args.reports}/searches/{stage.problem})",
                      flush=True)
                continue
            if left is not None and left < MIN_SEARCH_S:
                print(f"deadline: {stage.name} not started ({left:.0f} s left)", flush=True)
                status = 1
                continue
            log_dir, copy = runs / "search" / stage.problem, reports / "searches" / stage.problem
            if restore_search(copy, log_dir):
                print(f"{stage.name}: continues the committed partial search ({args.reports}/"
                      f"searches/{stage.problem})", flush=True)
            command = search_command(stage.problem, args.runs, DEV_DATA, profile, left)
            code = run(command, runs / f"search_{stage.problem}.log",
                       None if left is None else left + GRACE_S)
            if code != 0:
                status = 1
            if (log_dir / "results.csv").is_file():
                try:  # a search stopped (or out of --timeout) short of its trials is copied
                    # too, as a partial copy, to go on elsewhere
                    partial = code != 0 or search_rows(log_dir) < SEARCHES[stage.problem]
                    status = max(status, int(partial))
                    copy_search(log_dir, copy, partial=partial)
                except (OSError, ValueError) as exc:  # e.g. no trial ran the whole schedule
                    print(f"{stage.name}: not copied ({exc})", flush=True)
                    status = 1
        else:
            ready = [j.done() or search_complete(j) for j in stage.jobs]
            waiting = [j for j, ok in zip(stage.jobs, ready, strict=True) if not ok]
            jobs = [j for j, ok in zip(stage.jobs, ready, strict=True) if ok]
            print(f"{stage.name}: {sum(not j.done() for j in jobs)} of "
                  f"{len(stage.jobs)} jobs to run"
                  + (f", {len(waiting)} waiting for their searches to finish" if waiting
                     else ""), flush=True)
            status = max(status, int(bool(waiting)),
                         run_jobs(jobs, reports, profile.workers, deadline))
        print(f"{stage.name}: done after {(time.monotonic() - tick) / 60:.1f} min", flush=True)
    from analysis import paper_tables  # every table and figure from the records so far

    print(shlex.join(["$", "python", *tables_args]), flush=True)
    return max(status, paper_tables.main(["--reports", str(reports), *(
        x for doc in docs for x in ("--readme", str(REPO / doc)))]))


def _with_workers(flags: tuple[str, ...], workers: int) -> tuple[str, ...]:
    """The search flags with ``--workers`` replaced."""
    out = list(flags)
    out[out.index("--workers") + 1] = str(workers)
    return tuple(out)


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
