"""Kill the search driver with SIGKILL mid-search, resume it, lose and repeat nothing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MAX_EVALS = 10
KILL_AFTER_ROWS = 3


def command(data_dir, log_dir, *extra):
    return [sys.executable, "search/run.py", "--problem", "mmd_deepmerge", "--data",
            str(data_dir), "--log-dir", str(log_dir), "--max-evals", str(MAX_EVALS),
            "--workers", "2", "--evaluator", "process", "--set", "epochs=4",
            "--set", "max_batches_per_epoch=2", "--quiet", *extra]


def rows(log_dir: Path) -> int:
    path = log_dir / "results.csv"
    if not path.is_file():
        return 0
    return max(0, sum(1 for line in path.read_text().splitlines() if line.strip()) - 1)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def test_sigkill_then_resume(tiny_domain_pair, tmp_path):
    log_dir = tmp_path / "search"
    driver = subprocess.Popen(command(tiny_domain_pair, log_dir), cwd=REPO,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while rows(log_dir) < KILL_AFTER_ROWS:
            assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the search never wrote results.csv"
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)  # the driver only; its workers die with it
        driver.wait(timeout=30)
    finally:
        kill_group(driver.pid)
        driver.stderr.close()
    assert driver.returncode == -signal.SIGKILL

    before = pd.read_csv(log_dir / "results.csv")
    assert KILL_AFTER_ROWS <= len(before) < MAX_EVALS, "killed too late to test resuming"
    records = {int(i): digest(log_dir / "trials" / str(i) / "record.json")
               for i in before["job_id"]}
    dirs_before = {int(p.name) for p in (log_dir / "trials").iterdir()}
    interrupted = dirs_before - set(before["job_id"])
    # Interrupted trials that come back under their own id: those that checkpointed an epoch
    # (they continue from resume.pt, tests/test_trial_resume.py) or finished (record complete).
    returning = {i for i in interrupted if any((log_dir / "trials" / str(i) / name).is_file()
                                               for name in ("resume.pt", "record.json"))}

    # without --resume the folder is refused (exit 2), with it the search continues
    refused = subprocess.run(command(tiny_domain_pair, log_dir), cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = subprocess.run(command(tiny_domain_pair, log_dir, "--resume"), cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    after = pd.read_csv(log_dir / "results.csv")
    assert len(after) == MAX_EVALS  # max_evals counts the trials done before the kill
    assert after["job_id"].is_unique
    kept = after.set_index("job_id").loc[before["job_id"]]
    assert list(kept["objective"].astype(str)) == list(before["objective"].astype(str))
    for job_id, sha in records.items():  # completed trials were not re-run
        assert digest(log_dir / "trials" / str(job_id) / "record.json") == sha
    new_ids = set(after["job_id"]) - set(before["job_id"]) - returning
    assert set(after["job_id"]) >= returning
    assert min(new_ids) > max(dirs_before)  # no other configuration reuses an interrupted id
    for job_id in after["job_id"]:
        assert (log_dir / "trials" / str(job_id) / "record.json").is_file()
