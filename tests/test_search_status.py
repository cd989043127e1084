"""search/status.py reads a search while it runs, after it ends and after a resume.

A real search runs in the background; the status is read mid-way from this process (the
search's lock is never taken: the driver goes on), then after it finished, then after
``--resume`` added trials. Bad folders get one line and exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.status import StatusError, format_status, main, search_status

REPO = Path(__file__).resolve().parents[1]


def command(data_dir, log_dir, max_evals, *extra):
    return [sys.executable, "search/run.py", "--problem", "none_deepmerge", "--data",
            str(data_dir), "--log-dir", str(log_dir), "--max-evals", str(max_evals),
            "--workers", "1", "--evaluator", "serial", "--search", "random", "--set",
            "epochs=4", "--set", "max_batches_per_epoch=2", "--quiet", *extra]


def rows(log_dir: Path) -> int:
    path = log_dir / "results.csv"
    if not path.is_file():
        return 0
    return max(0, sum(1 for line in path.read_text().splitlines() if line.strip()) - 1)


def test_status_of_a_running_finished_and_resumed_search(tiny_domain_pair, tmp_path, capsys):
    log_dir = tmp_path / "search"
    driver = subprocess.Popen(command(tiny_domain_pair, log_dir, 6), cwd=REPO,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while rows(log_dir) < 2:
            assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the search never wrote two rows"
            time.sleep(0.05)
        mid = search_status(log_dir)  # while the driver runs
        assert driver.poll() is None, "the search ended before the status was read"
        assert mid["driver"]["state"] == "running" and mid["driver"]["pid"] == driver.pid
        assert 2 <= mid["finished"] < 6 and mid["max_evals"] == 6
        assert mid["best"] is not None and mid["elapsed_s"] > 0
        assert mid["remaining_s"] is not None and mid["remaining_s"] > 0
        assert all(t["state"] == "running" for t in mid["running"])
        assert driver.wait(timeout=300) == 0, driver.stderr.read().decode()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.stderr.close()
    done = search_status(log_dir)
    assert done["finished"] == 6 and done["done"] == 6 and not done["running"]
    assert done["driver"]["state"] == "not running" and done["remaining_s"] is None
    results = (log_dir / "results.csv").read_text().splitlines()
    best_row = max((line.split(",") for line in results[1:]),
                   key=lambda fields: float(fields[results[0].split(",").index("objective")]))
    assert done["best"]["job_id"] == int(best_row[results[0].split(",").index("job_id")])
    assert main([str(log_dir)]) == 0
    text = capsys.readouterr().out
    assert "6 of 6 finished" in text and f"job {done['best']['job_id']}" in text
    assert text.strip() == format_status(search_status(log_dir)).strip()
    assert main([str(log_dir), "--json", "--html", str(tmp_path / "s.html")]) == 0
    assert json.loads(capsys.readouterr().out)["finished"] == 6
    assert "6 of 6 finished" in (tmp_path / "s.html").read_text()
    # Resumed with two more trials: the status counts them all.
    subprocess.run(command(tiny_domain_pair, log_dir, 8, "--resume"), cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    resumed = search_status(log_dir)
    assert resumed["finished"] == 8 and resumed["max_evals"] == 8


@pytest.mark.parametrize("case", ["missing", "file", "empty folder", "damaged csv",
                                  "damaged json"])
def test_bad_folders_get_one_line(case, tiny_domain_pair, tmp_path, capsys):
    folder = tmp_path / "x"
    if case == "file":
        folder.write_text("hello")
    elif case != "missing":
        folder.mkdir()
    if case == "damaged csv":
        (folder / "search.json").write_text(json.dumps({"problem": "none_deepmerge"}))
        (folder / "results.csv").write_bytes(b"\x00\xff junk")
    if case == "damaged json":
        (folder / "search.json").write_text("{ truncated")
    with pytest.raises(StatusError):
        search_status(folder)
    assert main([str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
