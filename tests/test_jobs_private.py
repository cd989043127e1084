"""The private job files of ``jobs/ray_cluster.sh`` (issue 15, finding 8), without Slurm or Ray.

The old script wrote ``cluster.env`` (with the cluster's auth token) into the predictable
``/tmp/ray_<job id>``: a directory planted there by another user, holding a link named
``cluster.env`` to a file of theirs, received the token. Now the job dir is a fresh
``mktemp -d`` (mode 0700) and the other nodes accept that path only as a 0700 directory of the
user's own. ``ray_cluster_init`` runs here with a stub ``scontrol`` (no Slurm, no Ray started).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCONTROL = """#!/bin/sh
case "$1 $2" in
    "show hostnames") echo node1 ;;
    "show node") echo "NodeName=node1 Arch=x86_64 NodeAddr=127.0.0.1 NodeHostName=node1" ;;
esac
"""


def bash(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``script`` after sourcing ``jobs/ray_cluster.sh`` (a stub scontrol on PATH)."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "scontrol").write_text(SCONTROL)
    (stub / "scontrol").chmod(0o755)
    base = {key: value for key, value in os.environ.items()
            if key not in ("SLURM_TMPDIR", "TMPDIR", "XDG_RUNTIME_DIR", "RAY_JOB_DIR_BASE")
            and not key.startswith(("SLURM_", "RAY_"))}
    base["PATH"] = f"{stub}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess.run(["bash", "-c", f"source jobs/ray_cluster.sh\n{script}"], cwd=REPO,
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_token_never_reaches_a_planted_file(tmp_path):
    job = str(900_000_000 + secrets.randbelow(99_999_999))
    planted = Path(f"/tmp/ray_{job}")  # where the old script wrote cluster.env
    theirs = tmp_path / "attacker.txt"
    theirs.write_text("")
    theirs.chmod(0o666)
    planted.mkdir(mode=0o777)
    try:
        planted.chmod(0o777)
        (planted / "cluster.env").symlink_to(theirs)
        result = bash('ray_cluster_init && echo "JOBDIR=$RAY_JOB_DIR TOKEN=$RAY_AUTH_TOKEN"',
                      tmp_path, SLURM_JOB_ID=job, SLURM_JOB_NODELIST="node1",
                      SLURM_CPUS_ON_NODE="1", RAY_HEAD_IP="127.0.0.1")
        assert theirs.read_text() == "", "the token went to the planted file"
        assert result.returncode == 0, result.stderr + result.stdout
        job_dir, token = re.search(r"JOBDIR=(\S+) TOKEN=(\S+)", result.stdout).groups()
        try:
            assert not job_dir.startswith(str(planted))
            assert re.fullmatch(r"/tmp/gd-\w{6}", job_dir), job_dir
            info = os.lstat(job_dir)
            assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
            assert info.st_uid == os.geteuid()
            env_file = Path(job_dir) / "cluster.env"
            assert stat.S_IMODE(os.lstat(env_file).st_mode) == 0o600
            assert f"RAY_AUTH_TOKEN={token}" in env_file.read_text().replace('"', "")
            assert f"source {env_file}" in result.stdout  # the log names the private path
            assert len(f"{job_dir}/ray") <= 40  # Ray's socket paths stay under 107 bytes
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
    finally:
        shutil.rmtree(planted, ignore_errors=True)


def refused(path: Path, tmp_path: Path) -> str:
    result = bash(f'_rc_private_dir "{path}"', tmp_path)
    assert result.returncode != 0, f"{path} accepted"
    return result.stderr


def test_other_nodes_accept_only_a_0700_directory_of_ours(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert "symbolic link" in refused(link, tmp_path)
    assert list(target.iterdir()) == []  # nothing made through the link
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert "symbolic link" in refused(dangling, tmp_path)
    assert not (tmp_path / "nowhere").exists()
    plain = tmp_path / "file"
    plain.write_text("")
    assert "not a directory" in refused(plain, tmp_path)
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    assert "mode 755" in refused(open_dir, tmp_path)
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        assert "belongs to" in refused(foreign, tmp_path)
    fresh = tmp_path / "fresh"
    assert bash(f'_rc_private_dir "{fresh}"', tmp_path).returncode == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert bash(f'_rc_private_dir "{fresh}"', tmp_path).returncode == 0  # ours: accepted again


def test_job_dir_goes_to_a_short_safe_folder(tmp_path):
    long_dir = tmp_path / ("x" * 30)
    long_dir.mkdir()
    unsafe = Path(f"/tmp/gdu{secrets.token_hex(3)}")
    unsafe.mkdir()
    try:
        unsafe.chmod(0o777)  # world-writable, no sticky bit
        result = bash("RAY_NODES=(node1); _rc_job_dir_base", tmp_path,
                      RAY_JOB_DIR_BASE=str(unsafe), SLURM_TMPDIR=str(long_dir))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "/tmp"
        assert "without the sticky bit" in result.stderr and "too long" in result.stderr
    finally:
        unsafe.rmdir()
    short = Path(f"/tmp/gds{secrets.token_hex(3)}")
    short.mkdir(mode=0o700)
    try:
        result = bash("RAY_NODES=(node1); _rc_job_dir_base", tmp_path, SLURM_TMPDIR=str(short))
        assert result.stdout.strip() == str(short), result.stderr
    finally:
        short.rmdir()


@pytest.mark.parametrize(("ips", "expected"), [
    ("127.0.0.2 127.0.0.3", "1 127.0.0.1 127.0.0.1"),  # one machine: Ray on 127.0.0.1
    ("10.1.0.2 10.1.0.3", "0 10.1.0.2 10.1.0.3"),
])
def test_node_addresses(tmp_path, ips, expected):
    result = bash('RAY_NODES=(node1 node2); _rc_node_addresses && '
                  'echo "$RAY_LOOPBACK ${RAY_NODE_ADDRS[*]}"', tmp_path, RAY_NODE_IPS=ips)
    assert result.stdout.strip() == expected, result.stderr


def test_mixed_loopback_and_network_addresses_are_refused(tmp_path):
    result = bash("RAY_NODES=(node1 node2); _rc_node_addresses", tmp_path,
                  RAY_NODE_IPS="127.0.0.2 10.1.0.3")
    assert result.returncode != 0 and "some nodes are on loopback" in result.stderr
