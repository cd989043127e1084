r"""Seed robustness: rerun one configuration with seeds 1..N (``DIR/seed_<S>/record.json``).

Examples::

    python analysis/seeds.py --problem mmd_deepmerge --from-search runs/search/mmd_deepmerge \\
        --seeds 10 --out runs/seeds/mmd_deepmerge --workers 2
    python analysis/seeds.py --problem none_deepmerge --set epochs=5 --seeds 3 --out runs/s
    # one seed (Slurm array task; jobs/seeds.sbatch):
    python analysis/seeds.py --problem "$PROBLEM" --from-search "$SEARCH_DIR" --out "$OUT" \\
        --only-seed "$SLURM_ARRAY_TASK_ID"

The configuration is the best trial of ``--from-search`` under the search's own objective
(``--select`` names another strategy of :mod:`analysis.selection`), i.e. that trial record's
full ``config``, so the search's fixed ``--set`` values (``epochs``...) are kept; ``--set``
items are applied on top (without a search: on top of the problem's default configuration).
Each seed runs ``training.loop.run_trial`` into ``DIR/seed_<S>``; seeds whose record says
``ok`` are skipped, failed ones are rerun. ``DIR/seeds.json`` holds the configuration and
where it came from; a ``DIR`` that holds a study of another configuration is refused.

Data: ``--data``, else the search's own data folder (``search.json``), else the embedded
benchmark. Exit status: 0 every requested seed ok, 1 some seed failed (see its record),
2 bad input (unknown problem, missing search, search without a successful trial...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

SEED_DIR = "seed_{seed}"
NOT_SETTABLE = ("method", "backbone", "seed")


class SeedStudyError(ValueError):
    """Input that cannot give a seed study (reported with exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``analysis/seeds.py`` argument parser."""
    p = argparse.ArgumentParser(
        prog="analysis/seeds.py",
        description="Rerun one configuration with seeds 1..N; writes DIR/seed_<S>/record.json "
        "and DIR/seeds.json.")
    p.add_argument("--problem", required=True, help="<method>_<backbone>, e.g. mmd_deepmerge")
    p.add_argument("--from-search", metavar="LOGDIR",
                   help="search log folder: use its best configuration")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="set a hyperparameter (on top of the search's best, or of the "
                   "problem's defaults without --from-search); repeatable")
    p.add_argument("--select", default="search", metavar="STRATEGY",
                   help="model-selection strategy for --from-search (default: search = the "
                   "search's own objective)")
    p.add_argument("--seeds", type=int, default=10, metavar="N", help="seeds 1..N (default 10)")
    p.add_argument("--only-seed", type=int, metavar="S", help="run seed S only (Slurm arrays)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of the study")
    p.add_argument("--data", metavar="DIR", help="folder with source.h5 and target.h5 (default: "
                   "the search's data folder, else the embedded benchmark)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="seeds at once (default 1)")
    p.add_argument("--evaluator", choices=("process", "ray"), default="process",
                   help="process: local processes (default); ray: Ray tasks")
    p.add_argument("--ray-address", metavar="ADDR", help="running Ray cluster (host:port); "
                   "default: a private local one with --workers CPUs")
    p.add_argument("--cpus-per-trial", type=float, default=1, metavar="F",
                   help="Ray CPUs per seed (also its torch threads; default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0, metavar="F",
                   help="Ray GPUs per seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Checks argparse cannot express.

    Raises:
        SeedStudyError: a bad count or combination.
    """
    if not args.from_search and not args.overrides:
        raise SeedStudyError("give --from-search LOGDIR or at least one --set KEY=VALUE")
    if args.seeds < 1 or args.workers < 1:
        raise SeedStudyError("--seeds and --workers must be >= 1")
    if args.only_seed is not None and args.only_seed < 0:
        raise SeedStudyError("--only-seed must be >= 0")
    if args.ray_address and args.evaluator != "ray":
        raise SeedStudyError("--ray-address needs --evaluator ray")


def choose_configuration(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The configuration (every ``TrainConfig`` field) and a description of where it came from.

    Raises:
        SeedStudyError: unknown problem, missing or foreign search, no successful trial,
            invalid ``--set``.
    """
    from analysis.selection import SelectionError, best_configuration, get_strategy
    from problems import UnknownProblemError, get_problem
    from training.config import ConfigError, TrainConfig, parse_set_args

    try:
        problem = get_problem(args.problem)
        overrides = parse_set_args(args.overrides)
    except (UnknownProblemError, ConfigError) as exc:
        raise SeedStudyError(str(exc)) from None
    for key in overrides:
        if key in NOT_SETTABLE:
            raise SeedStudyError(f"--set {key}=...: {key} is chosen by --problem/--seeds")
    origin: dict[str, Any] = {"kind": "set", "overrides": list(args.overrides)}
    base = problem.defaults.to_dict()
    if args.from_search:
        log_dir = Path(args.from_search).resolve()
        if not log_dir.is_dir():
            raise SeedStudyError(f"--from-search {args.from_search}: no such folder")
        if not (log_dir / "results.csv").is_file():
            raise SeedStudyError(f"--from-search {args.from_search}: not a search log folder "
                                 "(no results.csv)")
        meta = _read(log_dir / "search.json")
        if meta.get("problem") not in (None, problem.name):
            raise SeedStudyError(f"--from-search {log_dir} is a search of {meta['problem']!r}, "
                                 f"not of --problem {problem.name!r}")
        try:
            strategy = get_strategy(args.select)
            base, row = best_configuration(log_dir, strategy)
        except SelectionError as exc:
            raise SeedStudyError(str(exc)) from None
        origin = {"kind": "search", "log_dir": str(log_dir), "job_id": int(row["job_id"]),
                  "trial_dir": str(row["trial_dir"]), "strategy": strategy.name,
                  "oracle": strategy.oracle, "objective_name": row["objective_name"],
                  "objective": float(row["objective"]), "score": float(row["score"]),
                  "search_fixed": meta.get("fixed"), "overrides": list(args.overrides)}
    try:
        config = TrainConfig.from_strings(
            {**overrides, "method": problem.method, "backbone": problem.backbone})
        merged = TrainConfig.from_dict({**base, **{k: getattr(config, k) for k in overrides}})
    except (ConfigError, TypeError, ValueError) as exc:
        raise SeedStudyError(f"--set: {exc}") from None
    if (merged.method, merged.backbone) != (problem.method, problem.backbone):
        raise SeedStudyError(f"the chosen configuration is {merged.method}/{merged.backbone}, "
                             f"not {problem.name}")
    return merged.to_dict(), origin


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def resolve_data(args: argparse.Namespace, origin: dict[str, Any]) -> str:
    """``--data``, else the search's data folder, else the embedded benchmark.

    Raises:
        SeedStudyError: the folder lacks ``source.h5`` or ``target.h5``.
    """
    from galaxies.schema import domain_paths

    data = args.data
    what = "--data"
    if data is None and origin["kind"] == "search":
        data = _read(Path(origin["log_dir"]) / "search.json").get("data_dir")
        what = f"the search's data folder (search.json of {origin['log_dir']}; override: --data)"
    if data is None:
        from galaxies.benchmark import ensure_benchmark

        return str(Path(ensure_benchmark(progress=not args.quiet)).resolve())
    missing = [str(p) for p in domain_paths(data).values() if not Path(p).is_file()]
    if missing:
        raise SeedStudyError(f"{what} {data}: missing {', '.join(missing)}")
    return str(Path(data).resolve())


def study_document(args: argparse.Namespace, config: dict[str, Any], origin: dict[str, Any],
                   data_dir: str) -> dict[str, Any]:
    """The content of ``seeds.json`` (the same for every task of one study)."""
    from search.logdir import versions

    command = ["python", "analysis/seeds.py", "--problem", args.problem]
    command += ["--from-search", origin["log_dir"]] if origin["kind"] == "search" else []
    for item in args.overrides:
        command += ["--set", item]
    command += ["--seeds", str(args.seeds), "--out", str(Path(args.out).resolve()),
                "--data", data_dir]
    method, backbone = config["method"], config["backbone"]
    return {"problem": args.problem, "method": method, "backbone": backbone,
            "config": {k: v for k, v in config.items() if k != "seed"},
            "seeds": list(range(1, args.seeds + 1)), "origin": origin, "data_dir": data_dir,
            "command": command, "versions": versions()}


def write_study(out: Path, document: dict[str, Any]) -> None:
    """Write ``seeds.json``; refuse a folder that holds a study of another configuration.

    Raises:
        SeedStudyError: ``out`` holds another problem, configuration or data folder.
    """
    from training.record import write_json

    out.mkdir(parents=True, exist_ok=True)
    path = out / "seeds.json"
    before = _read(path)
    keys = ("problem", "config", "data_dir")
    if before and any(before.get(k) != json.loads(json.dumps(document[k])) for k in keys):
        diff = sorted(k for k in set(before.get("config", {})) | set(document["config"])
                      if before.get("config", {}).get(k) != document["config"].get(k))
        raise SeedStudyError(f"{out} holds a seed study of another configuration (problem "
                             f"{before.get('problem')}, data {before.get('data_dir')}, differs in "
                             f"{diff or 'problem/data'}); choose another --out")
    write_json(path, document)


def seed_done(out: Path, seed: int) -> bool:
    """Whether ``seed_<S>/record.json`` exists with status ``ok``."""
    return _read(out / SEED_DIR.format(seed=seed) / "record.json").get("status") == "ok"


def run_seed(config: dict[str, Any], seed: int, data_dir: str, out: str, problem: str,
             threads: int | None = None) -> tuple[int, str, str | None]:
    """Train seed ``seed`` of ``config`` into ``out/seed_<S>``; returns (seed, status, error)."""
    import torch

    from training.config import TrainConfig
    from training.loop import run_trial

    if threads:
        torch.set_num_threads(threads)
    train_config = TrainConfig.from_dict({**config, "seed": seed})
    record = run_trial(train_config, data_dir, Path(out) / SEED_DIR.format(seed=seed),
                       problem=problem, progress=False)
    return seed, record["status"], record.get("error")


def execute(args: argparse.Namespace, config: dict[str, Any], data_dir: str, seeds: list[int]
            ) -> list[tuple[int, str, str | None]]:
    """Run ``seeds`` in this process, a local process pool, or as Ray tasks."""
    out = str(Path(args.out).resolve())
    if args.evaluator == "ray":
        import ray

        from search.evaluators import connect_ray, shutdown

        started = not ray.is_initialized()
        if args.ray_address:
            connect_ray(args.ray_address, args.workers, quiet=args.quiet)
        elif started:
            # A private local instance: no token auth. (connect_ray would set RAY_AUTH_MODE=token
            # when ~/.ray/auth_token exists, after ray was imported, and the driver could then
            # not talk to its own GCS.)
            ray.init(address="local", num_cpus=args.workers, include_dashboard=False,
                     log_to_driver=not args.quiet)
        remote = ray.remote(num_cpus=args.cpus_per_trial, num_gpus=args.gpus_per_trial)(run_seed)
        threads = max(1, int(args.cpus_per_trial))
        try:
            return ray.get([remote.remote(config, s, data_dir, out, args.problem, threads)
                            for s in seeds])
        finally:
            if started:
                shutdown("ray")
    workers = min(args.workers, len(seeds))
    if workers <= 1:
        return [run_seed(config, s, data_dir, out, args.problem) for s in seeds]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        jobs = [pool.submit(run_seed, config, s, data_dir, out, args.problem, threads)
                for s in seeds]
        return [job.result() for job in jobs]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``analysis/seeds.py``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        config, origin = choose_configuration(args)
        data_dir = resolve_data(args, origin)
        out = Path(args.out).resolve()
        write_study(out, study_document(args, config, origin, data_dir))
    except SeedStudyError as exc:
        parser.error(str(exc))
    requested = [args.only_seed] if args.only_seed is not None else list(range(1, args.seeds + 1))
    todo = [s for s in requested if not seed_done(out, s)]
    if not args.quiet:
        where = origin.get("log_dir", "--set")
        print(f"{args.problem}: configuration from {where} (job {origin.get('job_id', '-')}); "
              f"seeds {requested}: {len(requested) - len(todo)} done already, running {todo}")
    results = execute(args, config, data_dir, todo) if todo else []
    failed = [(s, err) for s, status, err in results if status != "ok"]
    for seed, error in failed:
        print(f"seed {seed} failed: {error} ({out / SEED_DIR.format(seed=seed)}/record.json)",
              file=sys.stderr)
    print(f"{args.problem}: ran {len(results)} seed(s), {len(failed)} failed; study in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    # Import the module by its package name so that worker processes unpickle ``run_seed``
    # from ``analysis.seeds`` rather than from this script's ``__main__``.
    from analysis.seeds import main as package_main

    sys.exit(package_main())
