r"""Seed robustness: rerun one configuration with seeds 1..N (``DIR/seed_<S>/record.json``).

Examples::

    python search/seeds.py --problem mmd_deepmerge --from-search runs/search/mmd_deepmerge \\
        --seeds 10 --out runs/seeds/mmd_deepmerge --workers 2
    python search/seeds.py --problem none_deepmerge --set epochs=5 --seeds 3 --out runs/s
    # one seed (Slurm array task; jobs/seeds.sbatch):
    python search/seeds.py --problem "$PROBLEM" --from-search "$SEARCH_DIR" --out "$OUT" \\
        --only-seed "$SLURM_ARRAY_TASK_ID"

The configuration is the best trial of ``--from-search`` under the search's own objective
(``--select`` names another strategy of :mod:`search.selection`), i.e. that trial record's
full ``config``, so the search's fixed ``--set`` values (``epochs``...) are kept; ``--set``
items are applied on top (without a search: on top of the problem's default configuration).
Each seed is one trial of the project's one runner (:mod:`search.runner`: the same run
function and evaluators as a search) into ``DIR/seed_<S>``; seeds whose record says ``ok``
are skipped, failed ones are rerun. ``DIR/seeds.json`` holds the configuration, where it
came from and the data's identity (``galaxies.pairs.data_identity``); a ``DIR`` that holds a
study of another configuration, or whose ``seeds.json`` or ``ok`` seed records were made on
other data (``galaxies.pairs.same_data``: the data, not its folder's path, so a moved
benchmark is the same data), is refused before anything is written.

Data: ``--data``, else the search's own data folder (``search.json``), else the embedded
benchmark. Paths in ``seeds.json`` are relative to the repository (or absolute outside it).
The data folder is validated once before any seed runs (:func:`search.runner.check_data`).
Exit status: 0 every requested seed ok, 1 some seed failed (see its record),
2 bad input (unknown problem, missing search, search without a successful trial, invalid
data...).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from galaxies.pairs import data_identity
from galaxies.validate import InvalidDatasetError
from search.cli import resources, runner_parent
from search.runner import Resources, TrialContext, check_data, run_configurations
from training.cli import (
    CliError,
    data_parent,
    problem_parent,
    quiet_parent,
    resolve_data,
    set_parent,
    typed_sets,
)
from training.record import (
    package_versions,
    portable_path,
    read_json,
    read_record,
    resolve_path,
    study_data_mismatch,
    write_json,
)

SEED_DIR = "seed_{seed}"
SEEDS_JSON = "seeds.json"
SEED_DIR_RE = re.compile(r"seed_\d+")  #: the folders of a study's seeds
NOT_SETTABLE = ("method", "backbone", "seed")


def build_parser() -> argparse.ArgumentParser:
    """The ``search/seeds.py`` argument parser."""
    p = argparse.ArgumentParser(
        prog="search/seeds.py",
        description="Rerun one configuration with seeds 1..N; writes DIR/seed_<S>/record.json "
        "and DIR/seeds.json.",
        parents=[problem_parent(),
                 set_parent("set a hyperparameter (on top of the search's best, or of the "
                            "problem's defaults without --from-search); repeatable"),
                 data_parent("the search's data folder, else the embedded benchmark"),
                 runner_parent(), quiet_parent()])
    p.add_argument("--from-search", metavar="LOGDIR",
                   help="search log folder: use its best configuration")
    p.add_argument("--shared-config", action="store_true",
                   help="--from-search may be a search of another problem of the same "
                   "backbone (a control or the oracle trained with the no-DA search's pick): "
                   "the hyperparameters both problems share come from the pick, the ones "
                   "whose defaults differ from --problem's defaults")
    p.add_argument("--select", default="search", metavar="STRATEGY",
                   help="model-selection strategy for --from-search (default: search = the "
                   "search's own objective)")
    p.add_argument("--seeds", type=int, default=10, metavar="N", help="seeds 1..N (default 10)")
    p.add_argument("--only-seed", type=int, metavar="S", help="run seed S only (Slurm arrays)")
    p.set_defaults(workers=1)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of the study")
    return p


def check_args(args: argparse.Namespace) -> Resources:
    """Checks argparse cannot express; the runner's resources.

    Raises:
        CliError: a bad count or combination.
    """
    if not args.from_search and not args.overrides:
        raise CliError("give --from-search LOGDIR or at least one --set KEY=VALUE")
    if args.seeds < 1:
        raise CliError("--seeds must be >= 1")
    if args.only_seed is not None and args.only_seed < 0:
        raise CliError("--only-seed must be >= 0")
    return resources(args)


def shared_configuration(picked: dict[str, Any], searched: str, problem: str
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A search pick of problem ``searched`` moved to ``problem`` (same backbone).

    Every field whose default is the same in both problems keeps the pick's value (the
    searched, shared hyperparameters: lr, batch size, weight decay, schedule...); a field whose
    defaults differ (the method, its own weights such as ``lambda_tl``) takes ``problem``'s
    default. Returns the configuration and those own-default fields.

    Raises:
        CliError: unknown problem, or another backbone.
    """
    from models.registry import UnknownNameError
    from problems import get_problem

    try:
        source, target = (get_problem(searched).defaults.to_dict(),
                          get_problem(problem).defaults.to_dict())
    except UnknownNameError as exc:  # a search of a problem no longer registered
        raise CliError(f"the search's problem {searched!r}: {exc}") from None
    if source["backbone"] != target["backbone"]:
        raise CliError(f"--shared-config: the search is of the {source['backbone']} backbone, "
                       f"--problem {problem} of {target['backbone']}")
    own = {key: value for key, value in target.items() if source.get(key) != value}
    return {**picked, **own}, own


def choose_configuration(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The configuration (every ``TrainConfig`` field) and a description of where it came from.

    Raises:
        CliError: unknown problem, missing or foreign search, no successful trial,
            invalid ``--set``.
    """
    from problems import get_problem
    from search.selection import SelectionError, best_configuration, get_strategy
    from training.config import ConfigError, TrainConfig

    overrides = typed_sets(args.problem, args.overrides, NOT_SETTABLE)
    problem = get_problem(args.problem)
    origin: dict[str, Any] = {"kind": "set", "overrides": list(args.overrides)}
    base = problem.defaults.to_dict()
    if args.from_search:
        log_dir = Path(args.from_search).resolve()
        if not log_dir.is_dir():
            raise CliError(f"--from-search {args.from_search}: no such folder")
        if not (log_dir / "results.csv").is_file():
            raise CliError(f"--from-search {args.from_search}: not a search log folder "
                           "(no results.csv)")
        meta = read_json(log_dir / "search.json") or {}
        searched = meta.get("problem")
        shared = searched not in (None, problem.name)
        if shared and not getattr(args, "shared_config", False):
            raise CliError(f"--from-search {args.from_search} is a search of "
                           f"{searched!r}, not of --problem {problem.name!r}. Fix: search "
                           f"{problem.name}, or add --shared-config for a control or oracle "
                           "trained with that search's configuration")
        try:
            strategy = get_strategy(args.select)
            base, row = best_configuration(log_dir, strategy)
        except SelectionError as exc:
            raise CliError(str(exc)) from None
        if shared:
            base, own = shared_configuration(base, searched, problem.name)
        origin = {"kind": "search", "log_dir": portable_path(log_dir),
                  "job_id": int(row["job_id"]),
                  "trial_dir": portable_path(row["trial_dir"]), "strategy": strategy.name,
                  "oracle": strategy.oracle, "objective_name": row["objective_name"],
                  "objective": float(row["objective"]), "score": float(row["score"]),
                  "search_fixed": meta.get("fixed"), "overrides": list(args.overrides)}
        if shared:
            origin.update(search_problem=searched, own_defaults=own)
    try:
        merged = TrainConfig.from_dict({**base, **overrides})
    except ConfigError as exc:
        raise CliError(f"--set: {exc}") from None
    if (merged.method, merged.backbone) != (problem.method, problem.backbone):
        raise CliError(f"the chosen configuration is {merged.method}/{merged.backbone}, "
                       f"not {problem.name}")
    return merged.to_dict(), origin


def study_data(args: argparse.Namespace, origin: dict[str, Any]) -> str:
    """``--data``, else the search's data folder, else the embedded benchmark (absolute).

    Raises:
        CliError: the folder lacks ``source.h5`` or ``target.h5``.
    """
    if args.data is None and origin["kind"] == "search":
        search = resolve_path(origin["log_dir"])
        stored = (read_json(search / "search.json") or {}).get("data_dir")
        if stored:
            return resolve_data(str(resolve_path(stored)),
                                what=f"the search's data folder (search.json of "
                                f"{origin['log_dir']}; override: --data)")
    return resolve_data(args.data, progress=not args.quiet)


def study_document(args: argparse.Namespace, config: dict[str, Any], origin: dict[str, Any],
                   data_dir: str) -> dict[str, Any]:
    """The content of ``seeds.json`` (the same for every task of one study on one data).

    ``data`` is the data's identity (``galaxies.pairs.data_identity``).
    """
    command = ["python", "search/seeds.py", "--problem", args.problem]
    command += ["--from-search", origin["log_dir"]] if origin["kind"] == "search" else []
    for item in args.overrides:
        command += ["--set", item]
    command += ["--seeds", str(args.seeds), "--out", portable_path(args.out),
                "--data", portable_path(data_dir)]
    return {"problem": args.problem, "method": config["method"], "backbone": config["backbone"],
            "config": {k: v for k, v in config.items() if k != "seed"},
            "seeds": list(range(1, args.seeds + 1)), "origin": origin,
            "data_dir": portable_path(data_dir), "data": data_identity(data_dir),
            "command": shlex.join(command),
            "versions": package_versions()}


def write_study(out: Path, document: dict[str, Any]) -> None:
    """Write ``seeds.json``; refuse a folder that is not this study's.

    A folder is this study's when it is new, empty (or holds only ``seed_<S>`` folders of a
    study whose ``seeds.json`` was not written yet), or holds this study's ``seeds.json``, and
    neither that file nor an ``ok`` seed record was made on other data
    (``training.record.study_data_mismatch``; records older than ``data.identity`` are
    compared on their attributes).

    Raises:
        CliError: ``out`` is a file, holds other files, or holds a study of another problem,
            configuration or data.
    """
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file. Fix: pass a folder path")
    path = out / SEEDS_JSON
    if out.is_dir() and not path.is_file():
        foreign = sorted(p.name for p in out.iterdir()  # a concurrent seed's temporary files
                         if not (p.is_dir() and SEED_DIR_RE.fullmatch(p.name))
                         and not p.name.startswith((".", SEEDS_JSON + ".tmp")))
        if foreign:
            raise CliError(f"{out} holds files that are not a seed study ({', '.join(foreign[:3])}"
                           f"{', ...' if len(foreign) > 3 else ''}). Fix: choose an empty or "
                           "new --out")
    out.mkdir(parents=True, exist_ok=True)
    before = read_json(path) or {}
    keys = ("problem", "config")
    if before and any(before.get(k) != json.loads(json.dumps(document[k])) for k in keys):
        diff = sorted(k for k in set(before.get("config", {})) | set(document["config"])
                      if before.get("config", {}).get(k) != document["config"].get(k))
        raise CliError(f"{out} holds a seed study of another configuration (problem "
                       f"{before.get('problem')}, differs in {diff or 'problem'}); choose "
                       "another --out")
    why = study_data_mismatch(out, document["data"])
    if why:
        raise CliError(f"{out} holds a seed study made on other data than --data "
                       f"{document['data_dir']} ({why}). Fix: pass the study's own --data "
                       f"(seeds.json: {before.get('data_dir', '?')}), or choose another --out")
    write_json(path, document)


def seed_done(out: Path, seed: int) -> bool:
    """Whether ``seed_<S>/record.json`` exists with status ``ok``."""
    return (read_record(out / SEED_DIR.format(seed=seed)) or {}).get("status") == "ok"


def run_seeds(args: argparse.Namespace, config: dict[str, Any], data_dir: str, seeds: list[int],
              resources: Resources) -> list[tuple[int, str, str | None]]:
    """Run ``seeds`` with the project's runner; returns ``(seed, status, error)`` per seed."""
    out = Path(args.out).resolve()
    fixed = {k: v for k, v in config.items() if k != "seed"}
    if resources.evaluator == "process" and min(resources.workers or 1, len(seeds)) == 1:
        resources = Resources("serial")  # one seed at a time (the default): in this process
    context = TrialContext(problem=args.problem, data_dir=data_dir, root=str(out),
                           trial_dir_pattern=SEED_DIR, fixed=fixed,
                           torch_threads=resources.torch_threads(),
                           die_with_driver=resources.evaluator == "process")
    results = run_configurations(context, [{"seed": s} for s in seeds], resources,
                                 quiet=args.quiet)
    outcome = []
    for seed, result in zip(seeds, results, strict=True):
        record = read_record(out / SEED_DIR.format(seed=seed)) or {}
        outcome.append((seed, record.get("status", "failed"),
                        record.get("error") or result["metadata"].get("failure")))
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``search/seeds.py``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run_resources = check_args(args)
        config, origin = choose_configuration(args)
        data_dir = study_data(args, origin)
        check_data(data_dir)  # bad data: one error, not N failed seeds
        out = Path(args.out).resolve()
        write_study(out, study_document(args, config, origin, data_dir))
    except (CliError, InvalidDatasetError) as exc:
        parser.exit(2, f"error: {exc}\n")  # one line: the usage would hide it
    requested = [args.only_seed] if args.only_seed is not None else list(range(1, args.seeds + 1))
    todo = [s for s in requested if not seed_done(out, s)]
    if not args.quiet:
        where = origin.get("log_dir", "--set")
        print(f"{args.problem}: configuration from {where} (job {origin.get('job_id', '-')}); "
              f"seeds {requested}: {len(requested) - len(todo)} done already, running {todo}")
    results = run_seeds(args, config, data_dir, todo, run_resources) if todo else []
    failed = [(s, err) for s, status, err in results if status != "ok"]
    for seed, error in failed:
        print(f"seed {seed} failed: {error} ({portable_path(out / SEED_DIR.format(seed=seed))}"
              "/record.json)", file=sys.stderr)
    print(f"{args.problem}: ran {len(results)} seed(s), {len(failed)} failed; study in "
          f"{portable_path(out)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
