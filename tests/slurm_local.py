"""Helpers of the Slurm tests (``test_jobs_slurm*.py``): the local Slurm of ``jobs/slurm-local``.

:func:`local_slurm` is the body of a module fixture: it installs Slurm when needed
(``install.sh``: apt-get; it fails loudly when it cannot), starts it (``start.sh``, one node or
``nodes`` slurmd on this machine) and stops it at the end (``stop.sh``), then checks that no
Slurm, MUNGE or Ray process the tests started is left: the recorded daemons, any new daemon, any
process in the UTS namespaces of this Slurm's slurmd (every job step and what it started lives
in them) and any Ray process whose environment names one of the tests' jobs. When a local Slurm
was already running in that folder before the tests, it is used and left running. Needs root, or
passwordless sudo.

:class:`Listeners` samples ``ss -ltnp`` while a job runs, keeps the sockets of the job's
processes (those in this Slurm's UTS namespaces; Slurm's own slurmd, slurmstepd and srun aside)
and checks that every one is on a loopback address.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from net_check import is_loopback, tcp_listeners

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "jobs" / "slurm-local"
TINY_TRIAL = "--set epochs=1 --set max_batches_per_epoch=2 --set batch_size=8"
DAEMONS = ("slurmctld", "slurmd", "slurmstepd", "munged")
RAY_NAMES = ("raylet", "gcs_server", "ray::", "ray/dashboard", "log_monitor.py",
             "autoscaler/_private/monitor.py", "ray.util.client.server", "default_worker.py",
             "ray_start.py")
SLURM_ENV = ("GALAXY_DA_SLURM_DIR", "SLURM_LOCAL_NODES", "SLURM_LOCAL_CTLD_PORT",
             "SLURM_LOCAL_SLURMD_PORT")
JOB_TIMEOUT = 300
SLURM_COMMS = ("slurmd", "slurmstepd", "srun")  # Slurm's own listeners: not the job's


def as_root(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo") is None:
        pytest.fail("the slurm tests need root or passwordless sudo (to run jobs/slurm-local)")
    return ["sudo", "-n", f"--preserve-env={','.join(SLURM_ENV)}", *command]


def run_script(name: str, timeout: float, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(as_root(["bash", str(LOCAL / name)]), capture_output=True,
                            text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        pytest.fail(f"jobs/slurm-local/{name} failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def read_proc(pid: int | str, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def uts_namespace(pid: int | str) -> str:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/ns/uts")
    return ""


def live_processes() -> dict[int, str]:
    """``{pid: "comm: command line"}`` of every live (non-zombie) process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if stat_line.rsplit(")", 1)[1].split()[0] != "Z":
            found[int(entry.name)] = f"{comm}: {cmdline}"
    return found


def daemon_pids(processes: dict[int, str]) -> set[int]:
    return {pid for pid, line in processes.items() if line.split(":", 1)[0] in DAEMONS}


def is_ray(line: str) -> bool:
    return any(name in line for name in RAY_NAMES)


def job_of(pid: int) -> int | None:
    """The ``SLURM_JOB_ID`` in the environment of ``pid`` (None when absent or unreadable)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"SLURM_JOB_ID="):
            with contextlib.suppress(ValueError):
                return int(item.split(b"=", 1)[1])
    return None


@dataclass
class LocalSlurm:
    """The running local Slurm: the environment to submit with and the jobs submitted."""

    env: dict[str, str]
    slurm_dir: Path
    namespaces: set[str] = field(default_factory=set)
    job_ids: list[int] = field(default_factory=list)
    job_dirs: set[str] = field(default_factory=set)

    def sbatch(self, script: str, out_dir: Path, settings: dict[str, str], *options: str,
               wait: bool = True) -> subprocess.Popen:
        """``sbatch [--wait] OPTIONS script`` from the repository root (settings in the env)."""
        name = f"gdtest-{uuid.uuid4().hex[:8]}"
        command = ["sbatch", "--parsable", f"--job-name={name}", "--partition=debug",
                   f"--output={out_dir}/slurm-%j.out", *options, script]
        if wait:
            command.insert(1, "--wait")
        process = subprocess.Popen(command, cwd=REPO, env={**self.env, **settings}, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        process.job_name = name  # type: ignore[attr-defined]
        return process

    def finish(self, process: subprocess.Popen, out_dir: Path) -> tuple[int, str]:
        """Wait for an ``sbatch --wait``; its exit status and the jobs' output."""
        try:
            stdout, _ = process.communicate(timeout=JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, _ = process.communicate()
        for token in stdout.split():
            with contextlib.suppress(ValueError):
                self.job_ids.append(int(token.split(";")[0]))
        logs = "\n".join(p.read_text() for p in sorted(out_dir.glob("slurm-*.out")))
        self.job_dirs.update(job_dirs(logs))
        return process.returncode, f"sbatch: {stdout}\n{logs}"

    def job_id(self, name: str, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True,
                                 text=True, env=self.env).stdout.split()
            if out:
                self.job_ids.append(int(out[0]))
                return int(out[0])
            time.sleep(0.5)
        pytest.fail(f"job {name} not in squeue after {timeout} s")

    def ours(self, pid: int | str) -> bool:
        """Whether ``pid`` runs under this Slurm's slurmd (in one of its UTS namespaces)."""
        return uts_namespace(pid) in self.namespaces


def recorded_pids(slurm_dir: Path) -> dict[str, int]:
    path = slurm_dir / "pids"
    if not path.is_file():
        return {}
    return {name: int(pid) for name, pid in (line.split() for line in path.read_text().split("\n")
                                             if line.strip())}


def local_slurm(slurm_dir: Path, nodes: int = 1, ctld_port: int = 6817,
                slurmd_port: int = 6818) -> Iterator[LocalSlurm]:
    """Install, start, yield and stop a local Slurm; check nothing it started is left."""
    before = live_processes()
    script_env = {**os.environ, "GALAXY_DA_SLURM_DIR": str(slurm_dir),
                  "SLURM_LOCAL_NODES": str(nodes), "SLURM_LOCAL_CTLD_PORT": str(ctld_port),
                  "SLURM_LOCAL_SLURMD_PORT": str(slurmd_port)}
    was_running = (bool(recorded_pids(slurm_dir))
                   and all(pid in before for pid in recorded_pids(slurm_dir).values()))
    run_script("install.sh", timeout=900, env=script_env)
    run_script("start.sh", timeout=120, env=script_env)
    started = recorded_pids(slurm_dir)
    uts = slurm_dir / "uts"
    namespaces = set(uts.read_text().split()) if uts.is_file() else set()
    assert namespaces or was_running, "start.sh recorded no UTS namespace of its slurmd"
    env = {**os.environ, "SLURM_CONF": str(slurm_dir / "slurm.conf"),
           "PATH": f"{os.environ['PATH']}:/usr/sbin"}
    local = LocalSlurm(env=env, slurm_dir=slurm_dir, namespaces=namespaces)
    try:
        yield local
    finally:
        if not was_running:
            run_script("stop.sh", timeout=120, env=script_env)
    if was_running:
        return
    deadline = time.monotonic() + 10  # killed processes may take a moment to go
    while True:
        now = live_processes()
        left = {pid: now[pid] for pid in started.values() if pid in now}
        left.update({pid: now[pid] for pid in daemon_pids(now) - daemon_pids(before)})
        left.update({pid: line for pid, line in now.items() if local.ours(pid)})
        left.update({pid: line for pid, line in now.items()
                     if is_ray(line) and job_of(pid) in local.job_ids})
        left.update({pid: line for pid, line in now.items()
                     for job_dir in local.job_dirs if job_dir in line})
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"processes left after stop.sh: {left}"
    remaining = [job_dir for job_dir in local.job_dirs if os.path.lexists(job_dir)]
    assert not remaining, f"job dirs left: {remaining}"


def job_dirs(log: str) -> list[str]:
    """The private job dirs named in a search job's log (``ray_cluster.sh`` prints them)."""
    return re.findall(r"\] job dir (\S+) \(mode 0700", log)


def read_results(log_dir: Path) -> pd.DataFrame:
    """``results.csv`` (retried while DeepHyper may be rewriting it); empty when absent."""
    path = log_dir / "results.csv"
    for _ in range(20):
        if not path.is_file():
            return pd.DataFrame({"job_id": []})
        with contextlib.suppress(pd.errors.ParserError, pd.errors.EmptyDataError):
            return pd.read_csv(path)
        time.sleep(0.2)
    return pd.read_csv(path)


def check_search(log_dir: Path, max_evals: int) -> pd.DataFrame:
    frame = read_results(log_dir)
    assert len(frame) == max_evals and frame["job_id"].is_unique, frame
    for job_id in frame["job_id"]:
        record = json.loads((log_dir / "trials" / str(job_id) / "record.json").read_text())
        assert record["status"] == "ok", (job_id, record["error"])
    return frame


def search_settings(data: Path, log_dir: Path, max_evals: int, workers: int = 1,
                    cpus_per_trial: int | None = None) -> dict[str, str]:
    # One trial at a time by default, with up to 2 CPUs (the test node may have more or fewer).
    cpus = cpus_per_trial or min(2, os.cpu_count() or 1)
    return {"PROBLEM": "mmd_deepmerge", "MAX_EVALS": str(max_evals), "DATA": str(data),
            "LOG_DIR": str(log_dir), "WORKERS": str(workers), "CPUS_PER_TRIAL": str(cpus),
            "EXTRA_ARGS": f"{TINY_TRIAL} --quiet"}


@dataclass
class Listeners:
    """Listening TCP sockets of a job's processes, accumulated over ``sample()`` calls."""

    slurm: LocalSlurm
    seen: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    # (local address, pid): (comm, command line)

    def sample(self) -> None:
        for address, pid, comm in tcp_listeners():
            if comm not in SLURM_COMMS and self.slurm.ours(pid):
                self.seen[(address, pid)] = (comm, read_proc(pid, "cmdline")[:300])

    def pids_of(self, comm: str) -> set[int]:
        """PIDs seen listening whose process name starts with ``comm``."""
        return {pid for (_, pid), (name, _) in self.seen.items() if name.startswith(comm)}

    def check(self) -> None:
        """Every listener seen is on loopback, and the Ray cluster's own were seen."""
        assert self.seen, "no listener of the job was seen"
        exposed = {key: value for key, value in self.seen.items() if not is_loopback(key[0])}
        assert not exposed, f"listeners not on loopback: {exposed}"
        for comm in ("gcs_server", "raylet", "ray::"):
            assert self.pids_of(comm), (comm, self.seen)


def check_private_job_dir(job_dir: str) -> None:
    """The job dir while the job runs: 0700 and ours, cluster.env 0600, token nowhere else."""
    info = os.lstat(job_dir)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    assert info.st_uid == os.geteuid()
    env_file = Path(job_dir) / "cluster.env"
    info = os.lstat(env_file)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600, oct(info.st_mode)
    match = re.search(r"RAY_AUTH_TOKEN=\"?([0-9a-f]{64})", env_file.read_text())
    assert match, env_file.read_text()
    token = match.group(1).encode()
    on_command_line = [pid for pid in os.listdir("/proc") if pid.isdigit()
                       and token in read_proc(pid, "cmdline").encode()]
    assert not on_command_line, f"the token is on the command line of {on_command_line}"
    holders = [str(path) for path in Path(job_dir).rglob("*")
               if path.is_file() and not path.is_symlink() and path.stat().st_size < 10**7
               and token in path.read_bytes()]
    assert holders == [str(env_file)], holders
