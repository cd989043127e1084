"""The Slurm job scripts of ``jobs/`` on the single-node Slurm of ``jobs/slurm-local`` (``slurm``).

The module fixture (:func:`slurm_local.local_slurm`) installs Slurm when needed, starts it, stops
it at the end and checks that no Slurm, MUNGE or Ray process the tests started is left. When a
local Slurm was already running before the tests, it is used and left running. Needs root, or
passwordless sudo. The two-node cluster is in ``test_jobs_slurm_two_nodes.py``.

Every job runs a tiny search or seed (tiny data, one epoch of two batches, one trial at a
time on the 2 CPUs of the node); the Ray cluster of a search job costs a few seconds per start.
While the whole-search job runs, every listener of its processes (Ray's, the driver's) is on
loopback and its job dir is private (mode 0700, ``cluster.env`` 0600, the token on no command
line).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from slurm_local import (
    JOB_TIMEOUT,
    Listeners,
    check_private_job_dir,
    check_search,
    job_dirs,
    local_slurm,
    read_results,
    search_settings,
)

pytestmark = pytest.mark.slurm

SLURM_DIR = Path(os.environ.get("GALAXY_DA_SLURM_DIR", "/var/tmp/galaxy-da-slurm"))


@pytest.fixture(scope="module")
def slurm():
    yield from local_slurm(SLURM_DIR, nodes=1)


SEARCH_OPTIONS = ("--nodes=1", "--gpus-per-node=0")


def test_search_job_runs_a_whole_search(slurm, tiny_domain_pair, tmp_path):
    log_dir = tmp_path / "search"
    job = slurm.sbatch("jobs/search.sbatch", tmp_path,
                       search_settings(tiny_domain_pair, log_dir, 3), *SEARCH_OPTIONS)
    listeners, checked = Listeners(slurm), False
    deadline = time.monotonic() + JOB_TIMEOUT
    while job.poll() is None and time.monotonic() < deadline:  # listeners; job dir once
        listeners.sample()
        logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
        if not checked and listeners.pids_of("raylet") and job_dirs(logs):
            check_private_job_dir(job_dirs(logs)[0])
            checked = True
        time.sleep(0.5)
    status, output = slurm.finish(job, tmp_path)
    assert status == 0, output[-5000:]
    check_search(log_dir, 3)
    assert "ready: 1 nodes" in output and "Ray cluster stopped" in output, output[-5000:]
    assert checked, f"the job dir was not seen while Ray ran:\n{output[-5000:]}"
    listeners.check()  # Ray's listeners (GCS, raylet, workers) and the driver's on loopback


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
