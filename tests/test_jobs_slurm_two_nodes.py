"""``jobs/search.sbatch`` on a two-node local Slurm (``slurm``): two slurmd on this machine.

The module fixture starts ``jobs/slurm-local`` with ``SLURM_LOCAL_NODES=2`` in a folder and on
ports of its own (``/var/tmp/galaxy-da-slurm2``, 6827-6829, so a one-node local Slurm may run
beside it): nodes ``galaxyda1`` (127.0.0.2) and ``galaxyda2`` (127.0.0.3), one CPU each, each
slurmd in a UTS namespace whose host name is its node name. A trial's record then says where it
ran (``host``), as on real nodes. The Ray cluster of a job on loopback nodes runs on 127.0.0.1
(the only address for which Ray keeps every listener on loopback), so its two Ray nodes are
told apart by node id and host name, not by address.

One job (two trials at a time, one CPU each) is requeued after its first results: both runs
start the head on galaxyda1 and a worker on galaxyda2, trials run on both nodes, every listener
of the job's processes is on loopback, the job dir is private, and the resumed search reaches
exactly ``MAX_EVALS`` trials with none lost, duplicated or re-run. ~3 min on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
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

SLURM_DIR = Path(os.environ.get("GALAXY_DA_SLURM_DIR2", "/var/tmp/galaxy-da-slurm2"))
NODES = ("galaxyda1", "galaxyda2")


@pytest.fixture(scope="module")
def slurm2():
    yield from local_slurm(SLURM_DIR, nodes=2, ctld_port=6827, slurmd_port=6828)


def checked_running_job_dir(listeners: Listeners, tmp_path: Path) -> bool:
    """Check the newest run's private job dir once both of its raylets were seen listening.

    A run prints its job dir, then starts its two raylets; each run's raylets have pids of
    their own, so the newest run is up when twice as many raylets were seen as job dirs were
    printed. Either run may be the one seen (a tiny first trial can finish before the second
    node's raylet is sampled). False when not yet up, or when that run ended and removed its
    dir in between: the caller looks again.
    """
    logs = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    dirs = job_dirs(logs)
    if not dirs or len(listeners.pids_of("raylet")) < 2 * len(dirs):
        return False
    try:
        check_private_job_dir(dirs[-1])
    except FileNotFoundError:
        return False
    return True


def test_two_node_search_uses_both_nodes_and_survives_a_requeue(slurm2, tiny_domain_pair,
                                                                 tmp_path):
    log_dir, max_evals = tmp_path / "search", 4
    settings = search_settings(tiny_domain_pair, log_dir, max_evals, workers=2, cpus_per_trial=1)
    job = slurm2.sbatch("jobs/search.sbatch", tmp_path, settings, "--nodes=2",
                        "--gpus-per-node=0")
    job_id = slurm2.job_id(job.job_name)
    listeners, private_checked = Listeners(slurm2), False
    deadline = time.monotonic() + JOB_TIMEOUT
    while len(read_results(log_dir)) < 1:  # first run: listeners, the private job dir
        if job.poll() is not None or time.monotonic() > deadline:
            _, output = slurm2.finish(job, tmp_path)
            pytest.fail(f"no completed trial before the job ended:\n{output[-5000:]}")
        listeners.sample()
        private_checked = private_checked or checked_running_job_dir(listeners, tmp_path)
        time.sleep(0.3)
    # Signal at once, then read what was complete: a trial finishing in between only adds rows.
    subprocess.run(["scancel", "--signal=USR1", "--batch", str(job_id)], check=True,
                   env=slurm2.env)
    before = read_results(log_dir)
    records = {i: (log_dir / "trials" / str(i) / "record.json").read_bytes()
               for i in before["job_id"]}
    while job.poll() is None and time.monotonic() < deadline + JOB_TIMEOUT:  # the requeued run
        listeners.sample()
        private_checked = private_checked or checked_running_job_dir(listeners, tmp_path)
        time.sleep(0.3)
    status, output = slurm2.finish(job, tmp_path)
    assert status == 0, output[-5000:]
    assert "restart count 0" in output and "restart count 1" in output, output[-5000:]
    assert f"requeueing job {job_id}" in output, output[-5000:]
    assert private_checked, f"the job dir was not seen while Ray ran:\n{output[-5000:]}"

    # (a) each run: the head on the first node, a worker on the second (Ray's own node list)
    assert output.count("ready: 2 nodes, 2 CPUs") == 2, output[-5000:]
    heads = re.findall(r"\[ray_cluster\] node (\S+) (\S+) head id (\w+)", output)
    workers = re.findall(r"\[ray_cluster\] node (\S+) (\S+) worker id (\w+)", output)
    assert [host for host, _, _ in heads] == [NODES[0]] * 2, heads
    assert [host for host, _, _ in workers] == [NODES[1]] * 2, workers
    assert len({node_id for *_, node_id in heads + workers}) == 4, (heads, workers)
    assert len(listeners.pids_of("raylet")) >= 4  # two raylets in each run

    # (b) trials on both nodes (the record's host: the node whose slurmd started the Ray node)
    after = check_search(log_dir, max_evals)
    hosts = {job_id: json.loads((log_dir / "trials" / str(job_id) / "record.json")
                                .read_text())["host"] for job_id in after["job_id"]}
    assert set(hosts.values()) == set(NODES), hosts

    # (c) the requeue lost nothing: completed trials kept as they were, none re-run
    assert set(before["job_id"]) <= set(after["job_id"])
    for i, content in records.items():
        assert (log_dir / "trials" / str(i) / "record.json").read_bytes() == content
    kept = after.set_index("job_id").loc[list(before["job_id"]), "objective"]
    assert list(kept) == list(before["objective"])

    listeners.check()  # every listener of the job's processes, both runs, on loopback
