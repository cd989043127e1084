"""The command-line layer every CLI shares: parent parsers, config and data resolution.

- :func:`problem_parent`, :func:`set_parent`, :func:`data_parent`, :func:`quiet_parent`:
  ``argparse`` parents, so a flag means the same in every command;
- :func:`typed_sets`: ``--set KEY=VALUE`` items checked against a problem (``method`` and
  ``backbone`` are chosen by ``--problem`` and refused; a misspelled key names its fix; a key
  the problem does not use, e.g. ``grl_coeff`` on ``none_deepmerge``, is refused with the
  problem's keys);
- :func:`resolve_data`: ``--data`` (which must hold ``source.h5`` and ``target.h5``), else the
  embedded benchmark, simulated on first use;

This module imports no network library.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training.config import ConfigError, parse_set_args
from training.naming import CHOSEN_BY_PROBLEM, ProblemNameError, problem_config, problem_names

__all__ = ["CliError", "data_parent", "problem_parent", "quiet_parent",
           "resolve_data", "set_parent", "typed_sets"]


class CliError(ValueError):
    """A command-line value that cannot be used (reported with exit status 2)."""


def problem_parent(required: bool = True) -> argparse.ArgumentParser:
    """``--problem <method>_<backbone>``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--problem", required=required, metavar="PROBLEM",
                        help="<method>_<backbone>: " + ", ".join(problem_names()))
    return parent


def set_parent(help_text: str = "override a hyperparameter (repeatable)"
               ) -> argparse.ArgumentParser:
    """``--set KEY=VALUE`` (repeatable), into ``args.overrides``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help=help_text)
    return parent


def data_parent(default_text: str = "the embedded benchmark, simulated on first use"
                ) -> argparse.ArgumentParser:
    """``--data DIR``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data", metavar="DIR", default=None,
                        help=f"folder with source.h5 and target.h5 (default: {default_text})")
    return parent


def quiet_parent() -> argparse.ArgumentParser:
    """``--quiet``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--quiet", action="store_true", help="no progress bars")
    return parent


def typed_sets(problem: str, items: Iterable[str],
               not_settable: Iterable[str] = CHOSEN_BY_PROBLEM) -> dict[str, Any]:
    """The ``--set`` items as typed values, validated against problem ``problem``.

    Raises:
        CliError: unknown problem, malformed item, unknown key (with a suggestion), invalid
            value, a key in ``not_settable``, or a key the problem does not use (another
            method's or backbone's field); the message names it.
    """
    items = list(items)
    try:
        config = problem_config(problem, items, not_settable)
        return {key: getattr(config, key) for key in parse_set_args(items)}
    except (ProblemNameError, ConfigError) as exc:
        raise CliError(str(exc)) from None


def resolve_data(data: str | None, what: str = "--data", progress: bool = True) -> str:
    """The absolute data folder: ``data`` (checked), else the embedded benchmark.

    Raises:
        CliError: ``data`` lacks ``source.h5`` or ``target.h5``.
    """
    from galaxies.schema import domain_paths

    if data is None:
        from galaxies.benchmark import ensure_benchmark

        return str(Path(ensure_benchmark(progress=progress)).resolve())
    missing = [str(p) for p in domain_paths(data).values() if not Path(p).is_file()]
    if missing:
        raise CliError(f"{what} {data}: missing {', '.join(missing)}. Fix: point {what} at a "
                       "folder written by galaxies/simulate.py or galaxies/import_real.py")
    return str(Path(data).resolve())
