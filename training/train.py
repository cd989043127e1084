r"""One trial from the command line.

Example::

    python training/train.py --problem mmd_deepmerge --out runs/mmd_seed1 --seed 1 \\
        --set lambda_tl=0.5 --set epochs=20

``--problem`` is ``<method>_<backbone>`` (``python search/run.py --list`` lists them); the
trial runs that problem's default configuration with the ``--set`` overrides (``method`` and
``backbone`` are chosen by ``--problem`` and cannot be set). ``--data`` defaults to the
embedded benchmark, simulated on first use. Writes ``OUT/record.json``, ``OUT/roc.json`` and
``OUT/checkpoint.pt``. An ``--out`` that holds a finished trial is refused unless ``--force``
replaces it (its stale ``calibration.json`` and ``ood_reference.npz`` go with it), and
``--force`` never replaces a folder holding anything but a trial's files; a folder with only
``resume.pt`` (an interrupted trial) is continued. Exits 1 when the trial fails (the reason is
in the record) and 2 on bad arguments or data, or when ``--out`` cannot be written (checked
before training; a disk that fills up during the trial too): one line ``error: ...``, no
traceback, and no truncated file (every file is written atomically).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.cli import CliError, data_parent, problem_parent, quiet_parent, set_parent


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of one trial."""
    parser = argparse.ArgumentParser(
        prog="training/train.py",
        description="Train and evaluate one configuration of a <method>_<backbone> problem.",
        parents=[problem_parent(), data_parent(), set_parent(), quiet_parent()],
    )
    parser.add_argument("--out", required=True, help="folder for record.json and checkpoint")
    parser.add_argument("--force", action="store_true",
                        help="replace a finished trial in --out (only a trial's own files)")
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




def check_out(out: Path, force: bool) -> list[Path]:
    """The files to remove before training into ``out`` (``--force``); refuse what is not ours.

    Raises:
        CliError: ``out`` is a file, holds a finished trial without ``force``, or holds files a
            trial does not write.
    """
    from training.checkpoint import CHECKPOINT
    from training.cli import CliError
    from training.record import CALIBRATION_FILE, OOD_REFERENCE_FILE, PREDICTIONS, RECORD, ROC
    from training.resume import RESUME

    # What a trial folder may hold (each name from the module that writes it).
    trial_files = {RECORD, ROC, PREDICTIONS, CHECKPOINT, CALIBRATION_FILE, OOD_REFERENCE_FILE,
                   RESUME}
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file. Fix: pass a folder path")
    if not out.is_dir():
        return []
    entries = [entry for entry in out.iterdir() if not entry.name.startswith(".")]
    foreign = sorted(e.name for e in entries if e.name not in trial_files
                     and not e.name.startswith((f"{RESUME}.tmp", f"{CHECKPOINT}.tmp")))
    if foreign:
        raise CliError(f"--out {out} holds files a trial does not write ({', '.join(foreign[:3])}"
                       f"{' ...' if len(foreign) > 3 else ''}). Fix: pass a new or empty folder")
    finished = [e for e in entries if e.name != RESUME]
    if finished and not force:
        raise CliError(f"--out {out} holds a finished trial. Fix: pass another folder, or "
                       "--force to replace it")
    return finished if force else []


def main(argv: list[str] | None = None) -> int:
    """Run one trial; print a summary; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.exit(2, f"error: --threads must be >= 1, got {args.threads}\n")
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

    from training.denormals import flush_denormals
    from training.loop import run_trial
    from training.rescore import ReevaluationError, reevaluate_trial

    flush_denormals()  # before the thread pool exists, so that every thread flushes
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data_dir = resolve_data(args.data, progress=not args.quiet)
        stale = check_out(Path(args.out), args.force)
        check_writable(args.out)
        for path in stale:  # --force: the previous trial's files (calibration included)
            path.unlink()
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
