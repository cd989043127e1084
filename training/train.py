r"""One trial from the command line.

Example::

    python training/train.py --problem mmd_deepmerge --out runs/mmd_seed1 --seed 1 \\
        --set lambda_tl=0.5 --set epochs=20

``--problem`` is ``<method>_<backbone>`` (``python search/run.py --list`` lists them); the
trial runs that problem's default configuration with the ``--set`` overrides (``method`` and
``backbone`` are chosen by ``--problem`` and cannot be set). ``--data`` defaults to the
embedded benchmark, simulated on first use. Writes ``OUT/record.json``, ``OUT/roc.json`` and
``OUT/checkpoint.pt``; exits 1 when the trial fails (the reason is in the record) and 2 on bad
arguments or data, or when ``--out`` cannot be written (checked before training; a disk that
fills up during the trial too): one line ``error: ...``, no traceback, and no truncated file
(every file is written atomically).
"""

from __future__ import annotations

import argparse
import json
import sys

from training.cli import CliError, data_parent, problem_parent, quiet_parent, set_parent


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of one trial."""
    parser = argparse.ArgumentParser(
        prog="training/train.py",
        description="Train and evaluate one configuration of a <method>_<backbone> problem.",
        parents=[problem_parent(), data_parent(), set_parent(), quiet_parent()],
    )
    parser.add_argument("--out", required=True, help="folder for record.json and checkpoint")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: config's)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--from-trial", metavar="DIR", default=None,
        help="do not train: score the network of this finished trial, which must have the same "
        "configuration apart from the method and train exactly the same network (AdaBN from a "
        "no-DA trial: both source-only with lambda_tl = 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one trial; print a summary; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    from galaxies.atomic import check_writable, write_error_message
    from galaxies.validate import InvalidDatasetError
    from training.cli import resolve_data
    from training.config import ConfigError
    from training.naming import ProblemNameError, problem_config

    try:
        config = problem_config(args.problem, overrides)
    except (ProblemNameError, ConfigError) as exc:
        parser.exit(2, f"error: {exc}\n")  # one line: the usage would hide it
    import torch

    from training.loop import ReevaluationError, reevaluate_trial, run_trial

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data_dir = resolve_data(args.data, progress=not args.quiet)
        check_writable(args.out)
        if args.from_trial:
            record = reevaluate_trial(config, args.from_trial, data_dir, args.out,
                                      problem=args.problem)
        else:
            record = run_trial(
                config, data_dir, args.out, problem=args.problem, progress=not args.quiet
            )
    except (CliError, InvalidDatasetError, ReevaluationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only --out: one line, no traceback
        message = write_error_message(exc, args.out)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    if record["status"] != "ok":
        print(f"trial failed ({record['failure']}): {record['error']} "
              f"(record: {args.out}/record.json)", file=sys.stderr)
        return 1
    summary = {
        key: {m: round(v, 4) if v is not None else None for m, v in values.items()}
        for key, values in record["metrics"].items()
    }
    print(
        json.dumps(
            {
                "problem": args.problem,
                "best_epoch": record["best_epoch"],
                "wall_time_s": round(record["wall_time_s"], 1),
                "metrics": summary,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
