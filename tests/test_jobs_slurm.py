"""The Slurm job scripts of ``jobs/`` on the single-node Slurm of ``jobs/slurm-local`` (``slurm``).

A module fixture installs Slurm when needed (``install.sh``: apt-get; it fails loudly when it
cannot), starts it (``start.sh``) and stops it at the end (``stop.sh``), then checks that no
Slurm, MUNGE or Ray process the tests started is left. When a local Slurm was already running
before the tests, it is used and left running. Needs root, or passwordless sudo.

Every job runs a tiny search or seed (tiny data, one epoch of two batches, one trial at a
time on the 2 CPUs of the node); the Ray cluster of a search job costs a few seconds per start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "jobs" / "slurm-local"
SLURM_DIR = Path(os.environ.get("GALAXY_DA_SLURM_DIR", "/var/tmp/galaxy-da-slurm"))
TINY_TRIAL = "--set epochs=1 --set max_batches_per_epoch=2 --set batch_size=8"
DAEMONS = ("slurmctld", "slurmd", "slurmstepd", "munged")
JOB_TIMEOUT = 300


def as_root(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo") is None:
        pytest.fail("the slurm tests need root or passwordless sudo (to run jobs/slurm-local)")
    return ["sudo", "-n", "--preserve-env=GALAXY_DA_SLURM_DIR", *command]


def run_script(name: str, timeout: float) -> str:
    result = subprocess.run(as_root(["bash", str(LOCAL / name)]), capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"jobs/slurm-local/{name} failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def live_processes() -> dict[int, str]:
    """``{pid: command line}`` of every live (non-zombie) process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            found[int(entry.name)] = f"{comm}: {cmdline}"
    return found


def daemon_pids(processes: dict[int, str]) -> set[int]:
    return {pid for pid, line in processes.items() if line.split(":", 1)[0] in DAEMONS}


def recorded_pids() -> dict[str, int]:
    path = SLURM_DIR / "pids"
    if not path.is_file():
        return {}
    return {name: int(pid) for name, pid in (line.split() for line in path.read_text().split("\n")
                                             if line.strip())}


@dataclass
class LocalSlurm:
    """The running local Slurm: the environment to submit with and the jobs submitted."""

    env: dict[str, str]
    job_ids: list[int] = field(default_factory=list)

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


@pytest.fixture(scope="module")
def slurm():
    before = live_processes()
    was_running = bool(recorded_pids()) and all(pid in before for pid in recorded_pids().values())
    run_script("install.sh", timeout=900)
    run_script("start.sh", timeout=120)
    started = recorded_pids()
    env = {**os.environ, "SLURM_CONF": str(SLURM_DIR / "slurm.conf"),
           "PATH": f"{os.environ['PATH']}:/usr/sbin"}
    local = LocalSlurm(env=env)
    try:
        yield local
    finally:
        if not was_running:
            run_script("stop.sh", timeout=120)
    if was_running:
        return
    deadline = time.monotonic() + 10  # killed processes may take a moment to go
    while True:
        now = live_processes()
        left = {pid: now[pid] for pid in started.values() if pid in now}
        left.update({pid: now[pid] for pid in daemon_pids(now) - daemon_pids(before)})
        left.update({pid: line for pid, line in now.items() for job in local.job_ids
                     if f"/tmp/ray_{job}/" in line or line.endswith(f"/tmp/ray_{job}")
                     or f"/tmp/ray_{job} " in line})
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"processes left after stop.sh: {left}"


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


def search_settings(data: Path, log_dir: Path, max_evals: int) -> dict[str, str]:
    # One trial at a time, with up to 2 CPUs (the test node may have more or fewer).
    return {"PROBLEM": "mmd_deepmerge", "MAX_EVALS": str(max_evals), "DATA": str(data),
            "LOG_DIR": str(log_dir), "WORKERS": "1",
            "CPUS_PER_TRIAL": str(min(2, os.cpu_count() or 1)),
            "EXTRA_ARGS": f"{TINY_TRIAL} --quiet"}


SEARCH_OPTIONS = ("--nodes=1", "--gpus-per-node=0")


def test_search_job_runs_a_whole_search(slurm, tiny_domain_pair, tmp_path):
    log_dir = tmp_path / "search"
    job = slurm.sbatch("jobs/search.sbatch", tmp_path,
                       search_settings(tiny_domain_pair, log_dir, 3), *SEARCH_OPTIONS)
    status, output = slurm.finish(job, tmp_path)
    assert status == 0, output[-5000:]
    check_search(log_dir, 3)
    assert "ready: 1 nodes" in output and "Ray cluster stopped" in output, output[-5000:]


def test_requeued_search_resumes_without_losing_trials(slurm, tiny_domain_pair, tmp_path):
    log_dir, max_evals = tmp_path / "search", 3
    job = slurm.sbatch("jobs/search.sbatch", tmp_path,
                       search_settings(tiny_domain_pair, log_dir, max_evals), *SEARCH_OPTIONS)
    job_id = slurm.job_id(job.job_name)
    deadline = time.monotonic() + JOB_TIMEOUT
    while len(read_results(log_dir)) < 1:
        if job.poll() is not None or time.monotonic() > deadline:
            _, output = slurm.finish(job, tmp_path)
            pytest.fail(f"no completed trial before the job ended:\n{output[-5000:]}")
        time.sleep(0.3)
    # Signal at once, then read what was complete: a trial finishing in between only adds rows.
    subprocess.run(["scancel", "--signal=USR1", "--batch", str(job_id)], check=True,
                   env=slurm.env)
    before = read_results(log_dir)
    records = {i: (log_dir / "trials" / str(i) / "record.json").read_bytes()
               for i in before["job_id"]}
    status, output = slurm.finish(job, tmp_path)
    assert status == 0, output[-5000:]
    assert "restart count 0" in output and "restart count 1" in output, output[-5000:]
    assert f"requeueing job {job_id}" in output, output[-5000:]
    after = check_search(log_dir, max_evals)
    assert set(before["job_id"]) <= set(after["job_id"])
    for i, content in records.items():  # completed trials kept as they were, none re-run
        assert (log_dir / "trials" / str(i) / "record.json").read_bytes() == content
    kept = after.set_index("job_id").loc[list(before["job_id"]), "objective"]
    assert list(kept) == list(before["objective"])


def test_seeds_array_job_writes_one_record_per_seed(slurm, tiny_domain_pair, tmp_path):
    out = tmp_path / "seeds"
    settings = {"PROBLEM": "mmd_deepmerge", "SEARCH_DIR": "none", "OUT": str(out),
                "DATA": str(tiny_domain_pair),
                "SETS": "epochs=1 max_batches_per_epoch=2 batch_size=8", "EXTRA_ARGS": ""}
    options = ("--array=1-3", "--gpus-per-task=0", "--cpus-per-task=1")
    status, output = slurm.finish(slurm.sbatch("jobs/seeds.sbatch", tmp_path, settings, *options),
                                  tmp_path)
    assert status == 0, output[-5000:]
    records = {}
    for seed in (1, 2, 3):
        path = out / f"seed_{seed}" / "record.json"
        record = json.loads(path.read_text())
        assert record["status"] == "ok" and record["seed"] == seed, record["error"]
        records[seed] = path.read_bytes()
    # Submitting again skips the seeds already done.
    rerun = tmp_path / "rerun"
    rerun.mkdir()
    status, output = slurm.finish(
        slurm.sbatch("jobs/seeds.sbatch", rerun, settings, "--array=3", *options[1:]), rerun)
    assert status == 0, output[-5000:]
    assert "1 done already, running []" in output, output[-5000:]
    assert (out / "seed_3" / "record.json").read_bytes() == records[3]
