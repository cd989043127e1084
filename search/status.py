r"""How a search is going: read its log folder, never its lock, and print where it stands.

Usable while the search runs (from another shell or another node on a shared file system),
after it finished, and after it was resumed::

    python search/status.py runs/search/mmd_deepmerge            # once
    python search/status.py runs/search/mmd_deepmerge --watch 10 # refresh every 10 s
    python search/status.py runs/search/mmd_deepmerge --html status.html

It reads ``search.json``, ``results.csv`` (strictly, :func:`search.logdir.read_results`), the
``trials/<id>/`` folders (``record.json``; ``resume.pt`` of a running trial: its last
completed epoch and last reported objective) and ``.lock`` (the driver's PID, host and start
time; the lock itself is never taken, so a running search is not disturbed). It prints:

- trials done (ran to the end), stopped (by the search's stopper), failed, and running
  (folder without a row: running if the driver is alive, else interrupted), with each running
  trial's epoch and last objective;
- the best configuration so far by the search's own (label-free) objective;
- the elapsed time of the current run and an estimate of the remaining time (mean wall time
  of the finished trials x trials left / workers).

A folder that is not a search log folder, or whose ``results.csv`` or ``search.json`` is
damaged, gets one ``error:`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import math
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from search.logdir import SEARCH_JSON, LogDirError, inspect_log_dir

__all__ = ["StatusError", "format_status", "search_status"]

LOCK = ".lock"


class StatusError(ValueError):
    """A folder that is not a readable search log folder (exit status 2)."""


def _driver(log_dir: Path) -> dict[str, Any]:
    """The driver named in ``.lock`` and whether it is alive (checked on this host only)."""
    try:
        holder = json.loads((log_dir / LOCK).read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or not holder.get("pid"):
        return {"state": "not running"}
    state = "unknown (another host)"
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
            state = "running"
        except ProcessLookupError:
            state = "not running"
        except (PermissionError, ValueError, TypeError):
            state = "running"  # the process exists (another user's)
    return {"state": state, **holder}


def _running_trial(folder: Path) -> dict[str, Any]:
    """Epoch and last objective of a trial without a row (from its ``resume.pt``)."""
    path = folder / "resume.pt"
    if not path.is_file():
        return {"epoch": 0, "objective": None}
    try:
        import torch

        resume = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        reporter = resume.get("on_epoch") or {}
        return {"epoch": int(resume["epoch"]), "objective": reporter.get("last"),
                "epochs": resume.get("config", {}).get("epochs")}
    except Exception:  # noqa: BLE001 - being written right now, or damaged: not fatal here
        return {"epoch": None, "objective": None}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def search_status(log_dir: str | os.PathLike) -> dict[str, Any]:
    """Where the search in ``log_dir`` stands (see the module docstring).

    Raises:
        StatusError: not a search log folder, or a damaged ``results.csv``/``search.json``.
    """
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise StatusError(f"{log_dir} is not a folder. Fix: pass a search's --log-dir")
    try:
        state = inspect_log_dir(log_dir)
    except LogDirError as exc:
        raise StatusError(str(exc)) from None
    if not state.search:
        raise StatusError(f"{log_dir} holds no {SEARCH_JSON}, so it is not a search log folder "
                          "(or the search has not started yet). Fix: pass a search's --log-dir")
    search = state.search
    args = search.get("args") or {}
    rows = []
    if state.results is not None:
        rows = list(csv.DictReader(io.StringIO(state.results.text, newline="")))
    counts = {"done": 0, "stopped": 0, "failed": 0}
    best, walls = None, []
    for row in rows:
        status = row.get("m:status") or ("failed" if row["objective"].startswith("F") else "ok")
        counts["done" if status == "ok" else status if status in counts else "failed"] += 1
        wall = _number(row.get("m:wall_time_s"))
        if wall is not None:
            walls.append(wall)
        value = _number(row["objective"])
        if status == "ok" and value is not None and (best is None or value > best["objective"]):
            best = {"job_id": int(row["job_id"]), "objective": value,
                    "config": {k[2:]: v for k, v in row.items() if k.startswith("p:")}}
    driver = _driver(log_dir)
    running = []
    for job_id in state.interrupted_ids:
        trial = _running_trial(log_dir / "trials" / str(job_id))
        trial["job_id"] = job_id
        trial["state"] = "running" if driver["state"] != "not running" else "interrupted"
        running.append(trial)
    max_evals = args.get("max_evals")
    workers = max(int(args.get("workers") or 1), 1)
    started = (search.get("runs") or [{}])[-1].get("started")
    elapsed = None
    if started and driver["state"] != "not running":
        elapsed = (datetime.now() - datetime.fromisoformat(started)).total_seconds()
    finished = len(rows)
    remaining = None
    if max_evals and walls and finished < max_evals:
        left = max_evals - finished
        remaining = sum(walls) / len(walls) * left / workers
    return {"log_dir": str(log_dir), "problem": search.get("problem"),
            "objective": search.get("objective"), "stopper": search.get("stopper"),
            "max_evals": max_evals, "workers": workers, "finished": finished, **counts,
            "running": running, "best": best, "driver": driver, "elapsed_s": elapsed,
            "remaining_s": remaining, "read_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_status(status: dict[str, Any]) -> str:
    """The status as text (what the command prints)."""
    driver = status["driver"]
    where = f" (PID {driver.get('pid')} on {driver.get('host')})" if driver.get("pid") else ""
    lines = [
        f"search {status['log_dir']}: {status['problem']}, objective {status['objective']}, "
        f"stopper {status['stopper'] or 'none'}; driver {driver['state']}{where}",
        f"trials: {status['finished']} of {status['max_evals'] or '?'} finished "
        f"({status['done']} ran to the end, {status['stopped']} stopped, {status['failed']} "
        f"failed), {len(status['running'])} running or interrupted",
    ]
    for trial in status["running"]:
        objective = trial.get("objective")
        shown = f"{objective:.4f}" if isinstance(objective, float) else "-"
        epochs = f"/{trial['epochs']}" if trial.get("epochs") else ""
        lines.append(f"  job {trial['job_id']}: {trial['state']}, epoch "
                     f"{trial['epoch'] if trial['epoch'] is not None else '?'}{epochs}, "
                     f"last objective {shown}")
    best = status["best"]
    if best is None:
        lines.append("best so far: none yet")
    else:
        config = ", ".join(f"{k}={v}" for k, v in best["config"].items())
        lines.append(f"best so far: job {best['job_id']}, objective {best['objective']:.4f} "
                     f"({status['objective']}): {config}")
    lines.append(f"elapsed {_duration(status['elapsed_s'])}, remaining about "
                 f"{_duration(status['remaining_s'])} (mean trial time x trials left / "
                 f"{status['workers']} workers)")
    return "\n".join(lines)


def write_html(status: dict[str, Any], path: str | os.PathLike) -> None:
    """A static page of the same (no server needed; refreshes itself every 30 s)."""
    from training.record import write_text

    body = html.escape(format_status(status))
    write_text(path, "<!doctype html><html><head><meta charset='utf-8'>"
               "<meta http-equiv='refresh' content='30'>"
               f"<title>{html.escape(str(status['problem']))} search</title></head>"
               f"<body><pre>{body}</pre><p>read at {status['read_at']}</p></body></html>\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``search/status.py``."""
    parser = argparse.ArgumentParser(prog="search/status.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("log_dir", help="the search's --log-dir")
    parser.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="print again every SECONDS until interrupted")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--html", default=None, metavar="FILE",
                        help="also write a static HTML page of the status")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``search/status.py`` / ``galaxy-da-status``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.watch is not None and not args.watch > 0:
        parser.exit(2, f"error: --watch must be > 0 seconds, got {args.watch}\n")
    try:
        while True:
            try:
                status = search_status(args.log_dir)
            except StatusError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(json.dumps(status, indent=1) if args.json else format_status(status),
                  flush=True)
            if args.html:
                write_html(status, args.html)
            if args.watch is None:
                return 0
            time.sleep(args.watch)
            print()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
