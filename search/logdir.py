"""The search's log folder: its lock, what is done, what was interrupted, and ``search.json``.

Layout::

    <log_dir>/.lock                    held (``flock``) by the driver using the folder
    <log_dir>/results.csv              DeepHyper's own (one row per completed trial)
    <log_dir>/trials/<job_id>/record.json   one record per trial (job id = DeepHyper's)
    <log_dir>/trials/<job_id>/resume.pt     the epoch checkpoint of a running (or interrupted)
                                            trial, removed once its record is written
    <log_dir>/search.json              problem, fixed values, objective, data (a path relative
                                       to the repository and its identity), the command,
                                       versions, runs
    <log_dir>/summary.csv              top-k configurations with source/target metrics

One driver at a time: :func:`lock_log_dir` takes an exclusive ``flock`` on ``.lock`` for the
driver's life (the OS drops it when the process dies, ``kill -9`` included, so a lock is
never stale; forked workers close their copy, so they cannot keep it) and writes the holder's
PID, host and start time into it for the message a second driver gets. ``flock`` works
across nodes on NFSv4 (Linux maps it to NFS locks) and on Lustre mounted with ``-o flock``;
a file system without locks is refused with that fix.

A trial counts as *completed* when its row is in ``results.csv``. A ``trials/<id>`` folder
without a row belongs to a trial that was running when the driver died: it is *interrupted*.
An interrupted trial with an epoch checkpoint (``trials/<id>/resume.pt``, written by
``training.loop.run_trial`` after every epoch) of this search is *resumable*
(:func:`resumable_trials`): a resumed search runs it again under the same job id, with the
same configuration, in the same folder, and it continues after its last completed epoch. The
other interrupted trials are kept as they are and their job ids are never reused (a resumed
search numbers new jobs after the largest id on disk), so records are never overwritten or
duplicated. One exception: a trial
whose ``record.json`` is complete (status ``ok`` or ``failed``, this search's problem and
fixed values) finished, and only its row was lost (the driver died between the two writes):
:func:`plan_repair` rebuilds that row from the record (the objective recomputed with the
search's objective, as the run function would have returned it), and a resumed search keeps
it as completed.

``results.csv`` is read strictly (:func:`read_results`): an empty file, a header cut short,
bytes that are not text, a row with the wrong number of fields, a job id that is not an
integer or appears twice, or an unknown job status raise :class:`LogDirError` (one line
naming the file and the fix) instead of being read as "no trials". The one damage repaired
is a last line without its newline (the driver died while appending a row): the partial row
is dropped and its trial's row rebuilt from its record.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.record import package_versions, read_json, read_record, write_json, write_text

RESULTS = "results.csv"
SEARCH_JSON = "search.json"
SUMMARY = "summary.csv"
LOCK = ".lock"
REQUIRED_COLUMNS = ("objective", "job_id", "job_status")
JOB_STATUSES = ("READY", "RUNNING", "DONE", "CANCELLING", "CANCELLED")  # DeepHyper's JobStatus
RESTORE = "restore it from a backup or start a new --log-dir"


class LogDirError(ValueError):
    """A log folder that cannot be used as it is; ``str()`` is one line ending in the fix."""


class LogDirInUseError(LogDirError):
    """Another live process holds the log folder's lock."""


@dataclass
class LogDirLock:
    """An exclusive lock on a log folder, held until :meth:`release` or the process's death.

    Attributes:
        log_dir: the locked folder.
        fd: the open, ``flock``-ed ``.lock`` file.
        created: the folder did not exist before :func:`lock_log_dir` made it.
    """

    log_dir: Path
    fd: int
    created: bool

    def forget(self) -> None:
        """In a forked child (a process-pool worker): close the inherited lock file.

        A ``flock`` belongs to the open file, which a fork shares: a worker that outlived a
        killed driver would otherwise keep the folder locked. The driver's lock is unaffected.
        """
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def release(self, discard: bool = False) -> None:
        """Unlock (the lock file stays).

        Args:
            discard: also remove the folder if this lock created it and it holds nothing but
                the lock file (a command refused before it wrote anything).
        """
        if self.fd < 0:
            return
        try:
            if discard and self.created and [p.name for p in self.log_dir.iterdir()] == [LOCK]:
                (self.log_dir / LOCK).unlink()
                self.log_dir.rmdir()
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = -1


def _holder(fd: int) -> dict[str, Any]:
    try:
        value = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def lock_log_dir(log_dir: str | os.PathLike) -> LogDirLock:
    """Create ``log_dir`` if needed and lock it for this process.

    Raises:
        LogDirInUseError: another process holds the lock; the message names its PID, host and
            start time.
    """
    log_dir = Path(log_dir)
    created = not log_dir.exists()
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by exec'd programs
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise LogDirInUseError(
                f"{log_dir} is in use by PID {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} (started {holder.get('started', '?')}). Fix: wait "
                "for it, or pass another --log-dir") from None
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: a file system without flock
            os.close(fd)
            raise LogDirError(
                f"{log_dir}: cannot lock {path} ({exc.strerror}). Fix: pass a --log-dir on a "
                "file system with locks (local disk, NFSv4, Lustre mounted with -o flock)"
            ) from None
        try:  # the file locked must still be the one at `path` (not removed meanwhile)
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode(), 0)
    lock = LogDirLock(log_dir, fd, created)
    os.register_at_fork(after_in_child=lock.forget)
    return lock


@dataclass
class Results:
    """``results.csv`` as read by :func:`read_results`.

    Attributes:
        header: the column names.
        text: the complete lines (header included), exactly as in the file.
        job_ids: the job id of each complete row.
        partial: a last line without its newline (a row cut short), else ``""``.
    """

    header: list[str]
    text: str
    job_ids: list[int]
    partial: str = ""


def read_results(path: str | os.PathLike) -> Results | None:
    """Read and check ``results.csv`` (``None`` if there is none).

    Raises:
        LogDirError: the file is damaged beyond a partly written last line.
    """
    path = Path(path)
    if not path.is_file():
        return None
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    end = text.rfind("\n") + 1
    complete, partial = text[:end], text[end:]
    problem = None
    if not raw.strip():
        problem = "is empty"
    elif "\ufffd" in text or "\x00" in text:
        problem = "is not a CSV table (it holds bytes that are not text)"
    elif not complete:
        problem = "ends inside its header (truncated)"
    else:
        problem, job_ids, header = _check_rows(complete)
    if problem:
        raise LogDirError(f"{path} {problem}, so the trials it lists cannot be kept. "
                          f"Fix: {RESTORE}")
    return Results(header, complete, job_ids, partial if partial.strip() else "")


def _check_rows(complete: str) -> tuple[str | None, list[int], list[str]]:
    """``(problem or None, job ids, header)`` of the complete lines of ``results.csv``."""
    try:
        lines = list(csv.reader(io.StringIO(complete, newline=""), strict=True))
    except csv.Error as exc:
        return f"is not a CSV table ({exc})", [], []
    header = lines[0]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing or len(set(header)) != len(header):
        return (f"has a damaged header (missing {missing or 'nothing'}, "
                f"{len(header) - len(set(header))} duplicated columns)"), [], header
    where = {name: header.index(name) for name in REQUIRED_COLUMNS}
    job_ids: list[int] = []
    for number, row in enumerate(lines[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            return f"line {number} has {len(row)} fields, the header {len(header)}", [], header
        try:
            job_id = int(row[where["job_id"]])
            if not row[where["objective"]].startswith("F"):
                float(row[where["objective"]])
        except ValueError:
            return f"line {number} has a job id or objective that is not a number", [], header
        if row[where["job_status"]] not in JOB_STATUSES:
            return (f"line {number} has an unknown job status "
                    f"{row[where['job_status']]!r}"), [], header
        if job_id in job_ids:
            return f"lists job id {job_id} twice", [], header
        job_ids.append(job_id)
    return None, job_ids, header


@dataclass
class LogDirState:
    """What a log folder already holds.

    Attributes:
        done_ids: job ids with a row in ``results.csv`` (completed trials).
        trial_ids: job ids with a ``trials/<id>`` folder.
        search: the previous ``search.json`` (empty if none).
        results: ``results.csv`` as read (``None`` if there is none).
    """

    done_ids: list[int] = field(default_factory=list)
    trial_ids: list[int] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)
    results: Results | None = None

    @property
    def n_done(self) -> int:
        """Number of completed trials."""
        return len(self.done_ids)

    @property
    def interrupted_ids(self) -> list[int]:
        """Trials with a folder but no row: they were running when the driver stopped."""
        return sorted(set(self.trial_ids) - set(self.done_ids))

    @property
    def next_job_id(self) -> int:
        """First job id that no earlier trial used."""
        return max([*self.done_ids, *self.trial_ids], default=-1) + 1

    @property
    def has_results(self) -> bool:
        """Whether anything of an earlier search is there."""
        return bool(self.done_ids or self.trial_ids)


def inspect_log_dir(log_dir: str | os.PathLike) -> LogDirState:
    """Read what ``log_dir`` already holds (nothing if it does not exist).

    Raises:
        LogDirError: ``results.csv`` is damaged (see :func:`read_results`), or ``search.json``
            exists but is not a readable JSON object.
    """
    log_dir = Path(log_dir)
    state = LogDirState()
    state.results = read_results(log_dir / RESULTS)
    if state.results is not None:
        state.done_ids = sorted(state.results.job_ids)
    trials = log_dir / "trials"
    if trials.is_dir():
        state.trial_ids = sorted(int(p.name) for p in trials.iterdir() if p.name.isdigit())
    search_json = log_dir / SEARCH_JSON
    state.search = read_json(search_json) or {}
    if search_json.exists() and not state.search:
        raise LogDirError(f"{search_json} is not a readable JSON object (truncated or "
                          f"damaged), so the search it describes cannot be checked. Fix: "
                          f"{RESTORE}")
    return state


@dataclass
class Repair:
    """What a resumed search fixes in ``results.csv`` before DeepHyper reloads it.

    Attributes:
        rows: rebuilt rows (column -> value) of trials whose record is complete but whose row
            is missing, by job id.
        partial: the partly written last line that is dropped (``""``: none).
    """

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    partial: str = ""

    def __bool__(self) -> bool:
        return bool(self.rows or self.partial)


def plan_repair(log_dir: str | os.PathLike, state: LogDirState, problem: str,
                fixed: dict[str, Any], objective: str, searched: list[str]) -> Repair:
    """Rows to rebuild from complete records, and a partial last line to drop (read-only).

    Args:
        log_dir: the search's folder.
        state: what it holds (:func:`inspect_log_dir`).
        problem: the search's problem (a record of another problem is left alone).
        fixed: the search's fixed values (a record that disagrees is left alone).
        objective: the search's objective (recomputed from each record).
        searched: the searched hyperparameters (the ``p:`` columns).

    Raises:
        LogDirError: the partial last line names a job whose record cannot rebuild it.
    """
    from search.runner import record_outcome

    log_dir = Path(log_dir)
    repair = Repair(partial=state.results.partial if state.results else "")
    for job_id in state.interrupted_ids:
        trial_dir = log_dir / "trials" / str(job_id)
        record = read_record(trial_dir) or {}
        config = record.get("config") or {}
        if (record.get("status") not in ("ok", "failed") or record.get("problem") != problem
                or any(config.get(k) != v for k, v in fixed.items())
                or any(name not in config for name in searched)):
            continue  # running when the driver died (or not this search's): interrupted
        outcome = record_outcome(record, objective,
                                 str((trial_dir / "record.json").relative_to(log_dir)))
        row = {f"p:{name}": config[name] for name in searched}
        row.update({"objective": outcome["objective"], "job_id": job_id, "job_status": "DONE"})
        row.update({f"m:{k}": v for k, v in outcome["metadata"].items()})
        repair.rows[job_id] = row
    if repair.partial and state.results is not None:
        fields = next(csv.reader([repair.partial]), [])
        where = state.results.header.index("job_id")
        if len(fields) > where + 1 and fields[where].isdigit():  # the job id is complete
            job_id = int(fields[where])
            if job_id not in repair.rows and job_id not in state.done_ids:
                raise LogDirError(
                    f"{log_dir / RESULTS} ends in a partly written row of job {job_id}, whose "
                    f"record (trials/{job_id}/record.json) is missing or incomplete, so its "
                    f"result cannot be rebuilt. Fix: {RESTORE}")
    return repair


def apply_repair(log_dir: str | os.PathLike, state: LogDirState, repair: Repair,
                 searched: list[str]) -> None:
    """Rewrite ``results.csv`` atomically with ``repair`` applied.

    Complete rows are kept byte for byte, the partial last line is dropped and the rebuilt
    rows are appended (under a header made from the search space if there was no file).
    """
    from search.runner import metadata_keys

    if not repair:
        return
    if state.results is not None:
        header, text = state.results.header, state.results.text
    else:
        header = [*(f"p:{name}" for name in searched), *REQUIRED_COLUMNS,
                  "m:timestamp_submit", "m:timestamp_gather",
                  *(f"m:{k}" for k in metadata_keys())]
        text = ""
    out = io.StringIO()
    writer = csv.DictWriter(out, header, extrasaction="ignore", lineterminator="\n")
    if not text:
        writer.writeheader()
    writer.writerows(
        {k: ("" if v is None else v) for k, v in repair.rows[job_id].items()}
        for job_id in sorted(repair.rows))
    write_text(Path(log_dir) / RESULTS, text + out.getvalue())


def resumable_trials(log_dir: str | os.PathLike, state: LogDirState, problem: str,
                     fixed: dict[str, Any], searched: list[str],
                     limit: int) -> dict[int, dict[str, Any]]:
    """Interrupted trials that continue from their ``resume.pt`` (read-only).

    A trial qualifies when its ``trials/<id>/resume.pt`` can be read and belongs to this
    search: the same problem, the search's fixed values, and a value for every searched
    hyperparameter. Call it after :func:`apply_repair` (a trial with a complete record is
    completed, not interrupted).

    Args:
        log_dir: the search's folder.
        state: what it holds (:func:`inspect_log_dir`).
        problem: the search's problem.
        fixed: the search's fixed values.
        searched: the searched hyperparameters.
        limit: at most this many, lowest job ids first (``max_evals`` - completed trials, so
            that the search's total stays ``max_evals``).

    Returns:
        ``{job id: {"parameters": {searched name: value}, "epoch": last completed epoch}}``.
    """
    from training.resume import read_resume

    found: dict[int, dict[str, Any]] = {}
    for job_id in state.interrupted_ids:
        if len(found) >= max(0, limit):
            break
        try:
            resume = read_resume(Path(log_dir) / "trials" / str(job_id), mmap=True)
        except Exception:  # noqa: BLE001 - unreadable: the trial stays interrupted
            continue
        if not isinstance(resume, dict):
            continue
        config = resume.get("config") or {}
        if (resume.get("problem") != problem or any(config.get(k) != v for k, v in fixed.items())
                or any(name not in config for name in searched)):
            continue
        found[job_id] = {"parameters": {name: config[name] for name in searched},
                         "epoch": int(resume.get("epoch", 0))}
    return found


def write_search_json(log_dir: Path, payload: dict[str, Any], previous: dict[str, Any]) -> Path:
    """Write ``search.json``: this run's ``payload`` plus the history of earlier runs."""
    runs = list(previous.get("runs", []))
    runs.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
                 "resume": payload.get("resume", False),
                 "completed_before": payload.get("completed_before", 0),
                 "interrupted_before": payload.get("interrupted_before", []),
                 "recovered_before": payload.get("recovered_before", []),
                 "resumed_before": payload.get("resumed_before", []),
                 "dropped_partial_row": payload.get("dropped_partial_row", "")})
    return write_json(log_dir / SEARCH_JSON, {**payload, "runs": runs,
                                               "versions": package_versions()})
