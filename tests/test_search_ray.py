"""A search on a real local Ray cluster, joined by address through the CLI (marker ``ray``).

The head runs on loopback with its own short ``--temp-dir`` (unix socket paths must stay under
~107 characters) and free ports, in a session of its own, so that it can be stopped by PID
without touching any other Ray cluster on the machine. ``ray stop`` (which stops every Ray
cluster of the user on the machine) is only called when no other Ray process was running
before the test.

It is started as ``jobs/ray_cluster.sh`` starts a cluster on one machine: through
``jobs/ray_start.py`` (Ray's CLI would replace ``--node-ip-address=127.0.0.1`` by the outward
address and listen on every interface), with the drivers under
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (so they keep ``127.0.0.1`` too), the per-node metrics
exporter off and the head's metrics ports free ones. While the drivers run, every listener of
the cluster's processes and of the drivers is checked to be on loopback (``ss -ltnp``). The
temp dir is inside a 0700 folder: Ray makes the temp dir itself 0777.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from net_check import is_loopback, tcp_listeners

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
RAY_START = [sys.executable, str(REPO / "jobs" / "ray_start.py")]
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_enable_metrics_collection": "0"}
RAY_NAMES = ("raylet", "gcs_server", "ray::", "ray/dashboard", "log_monitor.py",
             "autoscaler/_private/monitor.py", "ray.util.client.server", "default_worker.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_processes() -> dict[int, int]:
    """Live (non-zombie) Ray processes: ``{pid: session id}``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and any(name in cmdline for name in RAY_NAMES):
            found[int(entry.name)] = int(fields[3])  # fields: state, ppid, pgrp, session
    return found


def stop_session(session: int) -> None:
    """SIGTERM, then SIGKILL, every live Ray process of ``session`` (by PID)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for pid, sid in ray_processes().items() if sid == session]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = [pid for pid, sid in ray_processes().items() if sid == session]
            time.sleep(0.2)


def test_search_on_a_ray_cluster_by_address(tiny_domain_pair, tmp_path):
    foreign = set(ray_processes())
    private = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # 0700
    temp_dir = f"{private}/ray"
    port = free_port()
    env = {**os.environ, **LOOPBACK_ENV, "DASHBOARD_METRIC_PORT": str(free_port()),
           "AUTOSCALER_METRIC_PORT": str(free_port())}
    head = subprocess.Popen(
        [*RAY_START, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", f"--temp-dir={temp_dir}", "--include-dashboard=false",
         f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
         "--disable-usage-stats"],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env,
    )
    session = head.pid
    try:
        out, _ = head.communicate(timeout=120)
        assert head.returncode == 0, out[-3000:]
        # two drivers at once on one cluster: DeepHyper's RayStorage actor names must not clash
        drivers, errors = {}, contextlib.ExitStack()
        for name in ("a", "b"):
            drivers[name] = subprocess.Popen(
                [sys.executable, "search/run.py", "--problem", "mmd_deepmerge", "--data",
                 str(tiny_domain_pair), "--log-dir", str(tmp_path / name), "--evaluator", "ray",
                 "--ray-address", f"127.0.0.1:{port}", "--workers", "1", "--max-evals", "2",
                 "--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--quiet"],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors.enter_context(
                    (tmp_path / f"{name}.err").open("w")), env=env,
            )
        errors.close()  # the drivers hold their own copies
        seen = {}  # (address, pid): process name, of the cluster's and the drivers' listeners
        deadline = time.monotonic() + 300
        while any(d.poll() is None for d in drivers.values()) and time.monotonic() < deadline:
            ours = {pid for pid, sid in ray_processes().items() if sid == session}
            ours |= {d.pid for d in drivers.values()}
            seen.update({(address, pid): comm for address, pid, comm in tcp_listeners()
                         if pid in ours})
            time.sleep(0.3)
        exposed = {key: comm for key, comm in seen.items() if not is_loopback(key[0])}
        assert not exposed, f"Ray listeners not on loopback: {exposed}"
        names = set(seen.values())
        assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names)
        assert {d.pid for d in drivers.values()} <= {pid for _, pid in seen}, seen
        for name, driver in drivers.items():
            driver.wait(timeout=300)
            assert driver.returncode == 0, (tmp_path / f"{name}.err").read_text()[-3000:]
            frame = pd.read_csv(tmp_path / name / "results.csv")
            assert len(frame) == 2 and frame["job_id"].is_unique
            failures = frame["objective"].astype(str).str.startswith("F")
            assert not failures.any(), frame["m:failure"]
            for job_id in frame["job_id"]:
                assert (tmp_path / name / "trials" / str(job_id) / "record.json").is_file()
    finally:
        stop_session(session)
        if not foreign:
            subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=60)
        subprocess.run(["rm", "-rf", private], check=False)
    assert set(ray_processes()) <= foreign, "Ray processes left behind"
