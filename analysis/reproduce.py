"""The whole pipeline in one command: simulate -> search -> seed studies -> tables and figures.

Usage::

    python analysis/reproduce.py --profile cpu --out reports/cpu     # 2-core laptop, ~1 hour
    python analysis/reproduce.py --profile full --out reports/full   # GPU node (or --evaluator ray)
    python analysis/reproduce.py --profile tiny --out /tmp/tiny      # smoke test, ~1 min

Stages (each one is the documented CLI, run in this process; the equivalent shell commands
are listed in the README it writes):

1. data: the embedded benchmark (``galaxies.benchmark.ensure_benchmark``: simulated on first
   use, then reused; ``$GALAXY_DA_DATA`` or ``--data`` choose the folder). The ``tiny``
   profile simulates 40 + 40 images into ``<runs>/data``.
2. ``python search/run.py --resume`` for each problem of the profile (``<runs>/search/<p>``);
3. ``python search/seeds.py --from-search`` for each problem (``<runs>/seeds/<p>``);
4. ``python analysis/report.py`` into ``--out``, then ``--out/README.md``: the exact command,
   profile budget, versions, machine, wall time of every stage, Table 1, links to figures.

Rerunning the same command resumes: finished searches and seeds are not rerun. Training
records (with checkpoints) go to ``--runs`` (default ``runs/reproduce/<profile>``, ignored by
git); ``--out`` holds only tables, figures and the README. Exit status: 0, 1 when a stage
failed (see the README), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.naming import problem_names
from training.record import package_versions, portable_path

PAPER_METHODS = ("none", "mmd", "dann")  # the seed paper's Table 1 rows
DEEPMERGE = tuple(f"{method}_deepmerge" for method in PAPER_METHODS)


@dataclass(frozen=True)
class Profile:
    """A budget for the whole pipeline.

    Attributes:
        name: ``tiny`` | ``cpu`` | ``full``.
        summary: one line for the README.
        problems: problems searched (each then gets a seed study); ``()`` = every registered
            problem.
        max_evals: trials per search.
        seeds: seeds 1..N per selected configuration.
        fixed: ``--set`` items of every search (``{epochs}`` = the problem's default epochs).
        search: ``cbo`` | ``random``.
        evaluator: search/seed evaluator (``serial`` is run as one process for the seeds).
        workers: trials at once.
        simulate: ``(n_mergers, n_nonmergers)`` of a private small benchmark, or ``None`` for
            the embedded one.
    """

    name: str
    summary: str
    problems: tuple[str, ...]
    max_evals: int
    seeds: int
    fixed: tuple[str, ...]
    search: str = "cbo"
    evaluator: str = "process"
    workers: int = 2
    simulate: tuple[int, int] | None = None


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("tiny", "smoke test on 40 + 40 simulated images: 2 trials per search of 1 epoch x 2 "
            "batches of 8, 2 seeds", DEEPMERGE, 2, 2,
            ("epochs=1", "max_batches_per_epoch=2", "batch_size=8"), search="random",
            evaluator="serial", workers=1, simulate=(40, 40)),
    Profile("cpu", "2-core CPU budget (45-65 min, by the configurations chosen): the three "
            "DeepMerge problems, 6 trials per "
            "search, each 4 epochs of at most 30 batches (batch size searched), 10 seeds of "
            "each best configuration, 2 trials at once", DEEPMERGE, 6, 10,
            ("epochs=4", "max_batches_per_epoch=30")),
    Profile("full", "paper-length (GPU node or Slurm/Ray): all six problems, 40 trials per "
            "search of the problem's default epochs (training.config.default_config) over the "
            "whole training split with early stopping, 10 seeds of each best configuration",
            (), 40, 10, ("epochs={epochs}", "max_batches_per_epoch=0")),
)}


@dataclass
class Stage:
    """One step of the pipeline and what happened when it ran."""

    name: str
    command: list[str]
    run: Callable[[], int]
    problem: str | None = None
    status: str = "not run"
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def build_parser() -> argparse.ArgumentParser:
    """The ``analysis/reproduce.py`` argument parser."""
    p = argparse.ArgumentParser(prog="analysis/reproduce.py", description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=list(PROFILES), required=True,
                   help="; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values()))
    p.add_argument("--out", required=True, metavar="DIR",
                   help="report folder (README.md, tables, figures)")
    p.add_argument("--runs", metavar="DIR",
                   help="training records (default runs/reproduce/<profile>)")
    p.add_argument("--data", metavar="DIR", help="data folder (default: the embedded benchmark; "
                   "tiny: simulated into <runs>/data)")
    p.add_argument("--problems", nargs="+", choices=problem_names(), metavar="PROBLEM",
                   help="override the profile's problems")
    p.add_argument("--evaluator", choices=("serial", "process", "ray"),
                   help="override the profile's evaluator")
    p.add_argument("--workers", type=int, metavar="N", help="override the profile's workers")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster (with --evaluator ray)")
    p.add_argument("--gpus-per-trial", type=float, default=0, metavar="F",
                   help="Ray GPUs per trial (with --evaluator ray; default 0)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    return p


def shown(argv: list[str]) -> list[str]:
    """``argv`` as a user types it from the repository root (absolute paths made relative)."""
    return [portable_path(a) if os.path.isabs(a) else a for a in argv]


def plan(args: argparse.Namespace, profile: Profile, runs: Path, data: str) -> list[Stage]:
    """The stages of the pipeline with their equivalent shell commands."""
    from analysis import report as report_cli
    from problems import get_problem
    from search import run as search_cli
    from search import seeds as seeds_cli

    evaluator = args.evaluator or profile.evaluator
    workers = args.workers or profile.workers
    ray = ["--ray-address", args.ray_address] if args.ray_address else []
    gpus = ["--gpus-per-trial", str(args.gpus_per_trial)] if args.gpus_per_trial else []
    stages = []
    problems = args.problems or profile.problems or problem_names()
    for problem in problems:
        epochs = get_problem(problem).defaults.epochs
        sets = [a for item in profile.fixed for a in ("--set", item.format(epochs=epochs))]
        argv = ["--problem", problem, "--data", data, "--log-dir", str(runs / "search" / problem),
                "--max-evals", str(profile.max_evals), "--search", profile.search,
                "--evaluator", evaluator, "--workers", str(workers), *ray, *gpus, *sets,
                "--resume"] + (["--quiet"] if profile.name == "tiny" else [])
        stages.append(Stage(f"search {problem}", ["python", "search/run.py", *shown(argv)],
                            lambda argv=argv: search_cli.main(argv), problem))
    for problem in problems:
        seed_eval = "ray" if evaluator == "ray" else "process"
        argv = ["--problem", problem, "--from-search", str(runs / "search" / problem),
                "--seeds", str(profile.seeds), "--out", str(runs / "seeds" / problem),
                "--data", data, "--workers", str(workers), "--evaluator", seed_eval,
                *ray, *gpus] + (["--quiet"] if profile.name == "tiny" else [])
        stages.append(Stage(f"seeds {problem}", ["python", "search/seeds.py", *shown(argv)],
                            lambda argv=argv: seeds_cli.main(argv), problem))
    argv = ["--runs", str(runs / "search"), str(runs / "seeds"), "--out", str(args.out)]
    stages.append(Stage("report", ["python", "analysis/report.py", *shown(argv)],
                        lambda argv=argv: report_cli.main(argv)))
    return stages


def prepare_data(args: argparse.Namespace, profile: Profile, runs: Path) -> tuple[str, Stage]:
    """The data folder (simulated if needed) and the stage that made or found it."""
    tick = time.monotonic()
    if args.data:
        folder, note = str(Path(args.data).resolve()), "given with --data"
        command = ["python", "galaxies/validate.py", f"{portable_path(folder)}/source.h5",
                   f"{portable_path(folder)}/target.h5"]
    elif profile.simulate:
        from galaxies.schema import domain_paths
        from galaxies.simulate import simulate

        folder, (n_mergers, n_nonmergers) = str(runs / "data"), profile.simulate
        command = ["python", "galaxies/simulate.py", "--out", portable_path(folder), "--n-mergers",
                   str(n_mergers), "--n-nonmergers", str(n_nonmergers), "--seed", "1",
                   "--workers", "1"]
        note = "reused (simulated by an earlier run)"
        if not all(p.is_file() for p in domain_paths(folder).values()):
            simulate(folder, n_mergers=n_mergers, n_nonmergers=n_nonmergers, seed=1, workers=1,
                     progress=False)
            note = "simulated"
    else:
        from galaxies.benchmark import default_data_dir, ensure_benchmark

        existed = (default_data_dir() / "source.h5").is_file()
        folder = str(Path(ensure_benchmark()).resolve())
        note = "reused" if existed else "simulated with the defaults (seed 1)"
        command = ["python", "-c", "from galaxies.benchmark import ensure_benchmark; "
                   "ensure_benchmark()"]
    stage = Stage("data", command, lambda: 0, None, "ok", time.monotonic() - tick, [note])
    return folder, stage


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, GPU and OS of this machine."""
    info: dict[str, Any] = {"os": platform.platform(), "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                            if ln.startswith("model name")), platform.processor())
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal"))
        info["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    import torch

    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return info


def readme(command: str, profile: Profile, data: str, runs: Path, stages: list[Stage],
           total_s: float, out: Path) -> str:
    """The text of ``<out>/README.md``."""
    info = machine()
    lines = [f"# Reproduction report: `{profile.name}` profile", "",
             "Reproduces Table 1 and Figure 1 of Ciprijanovic et al. (2020), arXiv:2011.03591, "
             "on the embedded benchmark, plus a seed-robustness study.", "",
             "```bash", command, "```", "",
             f"Finished {time.strftime('%Y-%m-%d %H:%M:%S')} after {total_s / 60:.1f} min.", "",
             "## Budget", "", f"- {profile.summary}.",
             f"- searches: `{profile.search}`, {profile.max_evals} trials each, fixed "
             f"`{' '.join(profile.fixed)}`; seeds 1..{profile.seeds}",
             f"- data: `{portable_path(data)}`: {'; '.join(stages[0].notes)}",
             f"- training records: `{portable_path(runs)}`", "",
             "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += ["", "## Versions", ""]
    lines += [f"- {key}: {value}" for key, value in package_versions().items()]
    lines += ["", "## Stages", "", "| stage | wall time | status | command |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {s.name} | {s.wall_s:.0f} s | {s.status} | `{shlex.join(s.command)}` |"
              for s in stages]
    table1 = out / "table1.md"
    lines += ["", "## Table 1: accuracy (%) on the test sets", "",
              "Selected model (best search trial under the search's objective, seed 1) and, in "
              "parentheses, mean ± std (ddof=1) over the seed study.", "",
              table1.read_text() if table1.is_file() else "(no report: see the stages)", "",
              "## Figures", ""]
    for png in sorted((out / "figures").glob("*.png")):
        lines.append(f"![{png.stem}](figures/{png.name})" if png.stem.startswith("figure1")
                     else f"- [{png.stem}](figures/{png.name})")
    lines += ["", "All tables and links: [report.md](report.md)."]
    return "\n".join(lines) + "\n"


def run_stage(stage: Stage) -> None:
    """Run one stage; record its status and wall time (``SystemExit`` codes included)."""
    print(f"\n== {stage.name}: {shlex.join(stage.command)}", flush=True)
    tick = time.monotonic()
    try:
        code = stage.run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    stage.wall_s = time.monotonic() - tick
    stage.status = "ok" if code == 0 else f"exit {code}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``analysis/reproduce.py``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")
    profile = PROFILES[args.profile]
    command = "python analysis/reproduce.py " + shlex.join(
        shown(sys.argv[1:] if argv is None else list(argv)))
    out = Path(args.out).resolve()
    args.out = str(out)
    runs = Path(args.runs or f"runs/reproduce/{profile.name}").resolve()
    if args.dry_run:
        data = args.data or ("<runs>/data" if profile.simulate else "<embedded benchmark>")
        for stage in plan(args, profile, runs, data):
            print(shlex.join(stage.command))
        return 0
    start = time.monotonic()
    data, data_stage = prepare_data(args, profile, runs)
    stages = plan(args, profile, runs, data)
    failed_searches = set()
    for stage in stages:
        if stage.name.startswith("seeds ") and stage.problem in failed_searches:
            stage.status = "skipped: its search failed"
            continue
        run_stage(stage)
        if stage.name.startswith("search ") and stage.status != "ok":
            failed_searches.add(stage.problem)
    stages.insert(0, data_stage)
    out.mkdir(parents=True, exist_ok=True)
    text = readme(command, profile, data, runs, stages, time.monotonic() - start, out)
    (out / "README.md").write_text(text)
    print(f"\nreproduction report: {out / 'README.md'}")
    return 0 if all(s.status == "ok" for s in stages) else 1


if __name__ == "__main__":
    sys.exit(main())
