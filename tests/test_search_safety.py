"""A search's log folder is safe: one driver at a time, corrupt files refused, data checked
before the first trial, and interrupts end cleanly without losing a finished trial.

Issue 15, findings 4 (lock), 5 (corrupt ``results.csv``/``search.json``, other ``--data``),
6 (the search validates ``--data``) and 7 (SIGINT/SIGTERM, a trial finished just before a
``kill -9``). Trials are tiny (``epochs=1``, ``max_batches_per_epoch=2``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galaxies.schema import domain_paths, write_domain
from search.logdir import RESULTS, LogDirInUseError, lock_log_dir
from search.objectives import DEFAULT_OBJECTIVE, objective_value
from search.run import main
from training.record import read_record

REPO = Path(__file__).resolve().parents[1]
PROBLEM = "none_deepmerge"
FAST = ["--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--quiet"]
FIX_WORDS = "start a new --log-dir"


def argv(data_dir, log_dir, *extra, max_evals=2, evaluator="serial"):
    return [str(a) for a in ("--problem", PROBLEM, "--data", data_dir, "--log-dir", log_dir,
                             "--max-evals", max_evals, "--evaluator", evaluator, "--search",
                             "random", *FAST, *extra)]


def refused(capsys, *args) -> str:
    """Run the driver in this process; it must exit 2; returns its stderr."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def rows(log_dir: Path) -> int:
    path = log_dir / RESULTS
    if not path.is_file():
        return 0
    return max(0, sum(1 for line in path.read_text().splitlines() if line.strip()) - 1)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def finished_search(tiny_domain_pair, tmp_path_factory) -> Path:
    """A finished search of 2 trials (read-only: copy it before changing it)."""
    log_dir = tmp_path_factory.mktemp("finished") / "search"
    assert main(argv(tiny_domain_pair, log_dir)) == 0
    assert rows(log_dir) == 2
    return log_dir


@pytest.fixture
def search_copy(finished_search, tmp_path) -> Path:
    copy = tmp_path / "search"
    shutil.copytree(finished_search, copy)
    return copy


# --- finding 4: one driver per log folder --------------------------------------------------


def test_a_held_lock_refuses_a_second_driver(tiny_domain_pair, tmp_path, capsys):
    log_dir = tmp_path / "search"
    held = lock_log_dir(log_dir)
    try:
        err = refused(capsys, *argv(tiny_domain_pair, log_dir))
        assert f"is in use by PID {os.getpid()} on " in err and "another --log-dir" in err
        assert len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in log_dir.iterdir()) == [".lock"]  # nothing touched
        with pytest.raises(LogDirInUseError, match=str(os.getpid())):
            lock_log_dir(log_dir)
    finally:
        held.release()
    lock_log_dir(log_dir).release()  # free again once released (and after a kill -9: the OS)


def test_a_refused_command_leaves_no_folder(tmp_path, capsys):
    log_dir = tmp_path / "new"
    err = refused(capsys, *argv(tmp_path / "no_such_data", log_dir))
    assert "no_such_data" in err
    assert not log_dir.exists()


def test_a_full_disk_is_one_line(tiny_domain_pair, tmp_path, monkeypatch, capsys):
    import errno

    def full(log_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(log_dir) / ".lock"))

    monkeypatch.setattr("search.driver.lock_log_dir", full)
    err = refused(capsys, *argv(tiny_domain_pair, tmp_path / "search"))
    lock = tmp_path / "search" / ".lock"
    assert err.strip() == f"error: cannot write {lock}: No space left on device"


# --- finding 5: corrupt files are refused on --resume, never silently dropped --------------


def _header_cut(text: str) -> str:
    return text[: text.index("\n") // 2]


def _random_bytes(text: str) -> bytes:
    return np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()


def _bad_middle_row(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join([lines[0], "1e-3,oops\n", *lines[2:]])


def _duplicate_row(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join([*lines, lines[-1]])


@pytest.mark.parametrize(("name", "damage", "named"), [
    ("empty", lambda text: "", "is empty"),
    ("header_cut", _header_cut, "header"),
    ("random_bytes", _random_bytes, RESULTS),
    ("bad_middle_row", _bad_middle_row, "line 2"),
    ("duplicate_row", _duplicate_row, "twice"),
])
def test_corrupt_results_are_refused(name, damage, named, search_copy, tiny_domain_pair,
                                     capsys):
    path = search_copy / RESULTS
    before = path.read_text()
    damaged = damage(before)
    if isinstance(damaged, bytes):
        path.write_bytes(damaged)
    else:
        path.write_text(damaged)
    raw = path.read_bytes()
    err = refused(capsys, *argv(tiny_domain_pair, search_copy, "--resume", max_evals=3))
    assert str(path) in err and named in err and FIX_WORDS in err, err
    assert len(err.strip().splitlines()) == 1
    assert path.read_bytes() == raw  # left as it was, for the user to restore
    assert sorted(p.name for p in (search_copy / "trials").iterdir()) == ["0", "1"]


def test_truncated_search_json_is_refused(search_copy, tiny_domain_pair, capsys):
    path = search_copy / "search.json"
    path.write_text(path.read_text()[:100])
    err = refused(capsys, *argv(tiny_domain_pair, search_copy, "--resume", max_evals=3))
    assert str(path) in err and FIX_WORDS in err
    path.unlink()
    err = refused(capsys, *argv(tiny_domain_pair, search_copy, "--resume", max_evals=3))
    assert "search.json" in err and FIX_WORDS in err


def test_resume_with_other_data_is_refused(search_copy, tmp_path, tiny_domain_arrays, capsys):
    other = tmp_path / "other"
    for domain, data in tiny_domain_arrays.items():
        data.attrs["seed"] = 1  # another simulation
        write_domain(domain_paths(other)[domain], data)
    err = refused(capsys, *argv(other, search_copy, "--resume", max_evals=3))
    assert "other data" in err and "--data" in err


@pytest.mark.parametrize("cut", ["inside_last_row", "after_header", "missing"])
def test_truncated_rows_are_recovered_from_records(cut, search_copy, finished_search,
                                                   tiny_domain_pair, capsys):
    """A row cut short (or lost, or the whole file) whose trial's record is complete is
    rebuilt from the record; DeepHyper resumes from the rebuilt file."""
    path = search_copy / RESULTS
    text = path.read_text()
    header_end = text.index("\n") + 1
    if cut == "missing":
        path.unlink()
    else:
        path.write_text(text[: len(text) - 20] if cut == "inside_last_row" else text[:header_end])
    max_evals = 3 if cut == "missing" else 2  # 2 of 2: nothing to run
    assert main(argv(tiny_domain_pair, search_copy, "--resume", max_evals=max_evals)) == 0
    out = capsys.readouterr().out
    assert "recovered" in out
    original = pd.read_csv(finished_search / RESULTS).set_index("job_id")
    repaired = pd.read_csv(path).set_index("job_id")
    assert sorted(repaired.index) == list(range(max_evals))
    assert np.allclose(repaired.loc[[0, 1], "objective"].astype(float),
                       original.loc[[0, 1], "objective"].astype(float))
    assert (repaired["m:status"] == "ok").all()
    for column in [c for c in original.columns if c.startswith("p:")]:
        assert list(repaired.loc[[0, 1], column]) == pytest.approx(list(original[column]))


def test_a_partial_row_without_its_record_is_refused(search_copy, tiny_domain_pair, capsys):
    path = search_copy / RESULTS
    path.write_text(path.read_text()[:-20])
    (search_copy / "trials" / "1" / "record.json").unlink()
    raw = path.read_bytes()
    err = refused(capsys, *argv(tiny_domain_pair, search_copy, "--resume", max_evals=3))
    assert "partly written row of job 1" in err and FIX_WORDS in err
    assert path.read_bytes() == raw


# --- finding 6: --data is validated once, before the first trial --------------------------


def _nan_pixels(pair):
    pair["source"].images[3, 0, 10, 10] = np.nan


def _labels_7(pair):
    pair["source"].labels[0] = 7


def _empty_split(pair):
    pair["target"].split[pair["target"].split == 1] = 0


@pytest.mark.parametrize(("damage", "named"), [
    (_nan_pixels, "source.h5"), (_labels_7, "source.h5"), ("64x64_target", "target.h5"),
    (_empty_split, "target.h5"), ("swapped", "source.h5"), ("truncated", "target.h5"),
])
def test_invalid_data_stops_the_search_before_any_trial(damage, named, tiny_domain_arrays,
                                                        tmp_path, capsys):
    data_dir = tmp_path / "data"
    paths = domain_paths(data_dir)
    if callable(damage):
        damage(tiny_domain_arrays)
    for domain, data in tiny_domain_arrays.items():
        write_domain(paths[domain], data)
    if damage == "swapped":
        os.replace(paths["source"], tmp_path / "s.h5")
        os.replace(paths["target"], paths["source"])
        os.replace(tmp_path / "s.h5", paths["target"])
    elif damage == "64x64_target":
        import h5py

        with h5py.File(paths["target"], "a") as h5:
            images = h5["images"][:, :, :64, :64]
            del h5["images"]
            h5.create_dataset("images", data=images)
    elif damage == "truncated":
        raw = paths["target"].read_bytes()
        paths["target"].write_bytes(raw[: len(raw) // 2])
    log_dir = tmp_path / "search"
    err = refused(capsys, *argv(data_dir, log_dir))
    assert named in err and "Fix:" in err
    assert len(err.strip().splitlines()) == 1
    assert not log_dir.exists()  # no trial, no search.json, no folder


def test_seed_study_validates_data(tiny_domain_arrays, tmp_path, capsys):
    from search.seeds import main as seeds_main

    _labels_7(tiny_domain_arrays)
    for domain, data in tiny_domain_arrays.items():
        write_domain(domain_paths(tmp_path / "data")[domain], data)
    with pytest.raises(SystemExit) as info:
        seeds_main(["--problem", PROBLEM, "--set", "epochs=1", "--seeds", "1", "--data",
                    str(tmp_path / "data"), "--out", str(tmp_path / "seeds"), "--quiet"])
    assert info.value.code == 2
    assert "labels must be 0 or 1" in capsys.readouterr().err
    assert not (tmp_path / "seeds").exists()


# --- finding 7: interrupts ------------------------------------------------------------------

# The driver with a hook: trial number HOOK_AT (1-based; counted per process, i.e. per worker
# of a process pool) writes its record, then the run function touches MARKER.<pid> and
# sleeps, as if the driver were stopped between the record and results.csv's row.
HOOKED_DRIVER = textwrap.dedent("""
    import os, sys, time
    import training.loop as loop
    real, calls = loop.run_trial, []

    def hooked(*args, **kwargs):
        record = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == int(sys.argv[1]):
            open(f"{sys.argv[2]}.{os.getpid()}", "w").close()
            time.sleep(600)
        return record

    loop.run_trial = hooked
    from search.run import main
    sys.exit(main(sys.argv[3:]))
""")


def markers(marker: Path) -> int:
    return len(list(marker.parent.glob(marker.name + ".*")))


def start(args, hook_at=None, marker=None):
    prefix = (["-c", HOOKED_DRIVER, str(hook_at), str(marker)] if hook_at
              else ["search/run.py"])
    return subprocess.Popen([sys.executable, *prefix, *args], cwd=REPO, text=True,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for(driver, condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        if driver.poll() is not None:
            raise AssertionError(f"driver ended before {what}: {driver.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def check_resumed(data_dir, log_dir, max_evals, kept: pd.DataFrame, capsys, **kwargs):
    """Resume (in this process: the driver's imports are paid once); returns the table, stdout."""
    capsys.readouterr()
    assert main(argv(data_dir, log_dir, "--resume", max_evals=max_evals, **kwargs)) == 0
    after = pd.read_csv(log_dir / RESULTS)
    assert len(after) == max_evals and after["job_id"].is_unique
    old = after.set_index("job_id").loc[kept["job_id"]]
    assert list(old["objective"].astype(str)) == list(kept["objective"].astype(str))
    return after, capsys.readouterr().out


def interrupt_after_record(args, how, tmp_path, hook_at) -> str:
    """Run the hooked driver until trial ``hook_at`` wrote its record, then send ``how``."""
    marker = tmp_path / f"record_written_{how}"
    driver = start(args, hook_at=hook_at, marker=marker)
    try:
        wait_for(driver, lambda: markers(marker), f"trial {hook_at}'s record")
        driver.send_signal(how)
        _, err = driver.communicate(timeout=60)
    finally:
        kill_group(driver.pid)
    assert driver.returncode == (143 if how == signal.SIGTERM else -signal.SIGKILL), err
    return err


def test_a_finished_trial_killed_before_its_row_is_kept(tiny_domain_pair, tmp_path, capsys):
    """SIGTERM (clean: one line, 143), then SIGKILL, each just after a trial wrote its record
    and before its row: both trials are recovered from their records, none is re-run."""
    log_dir = tmp_path / "search"
    args = argv(tiny_domain_pair, log_dir, max_evals=4)
    err = interrupt_after_record(args, signal.SIGTERM, tmp_path, hook_at=2)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("interrupted by SIGTERM: 2 trials done") and "--resume" in err, err
    assert list(pd.read_csv(log_dir / RESULTS)["job_id"]) == [0]  # job 1 has no row

    interrupt_after_record([*args, "--resume"], signal.SIGKILL, tmp_path, hook_at=1)
    before = pd.read_csv(log_dir / RESULTS)
    assert list(before["job_id"]) == [0, 1]  # job 1 recovered; job 2 finished, has no row
    records = {i: read_record(log_dir / "trials" / str(i)) for i in (1, 2)}
    assert all(record["status"] == "ok" for record in records.values())
    raw = {i: (log_dir / "trials" / str(i) / "record.json").read_bytes() for i in (1, 2)}

    after, out = check_resumed(tiny_domain_pair, log_dir, 4, before, capsys)
    assert sorted(after["job_id"]) == [0, 1, 2, 3] and "recovered 1 finished trials [2]" in out
    for job_id, record in records.items():
        row = after.set_index("job_id").loc[job_id]
        assert row["objective"] == pytest.approx(objective_value(DEFAULT_OBJECTIVE, record))
        assert (log_dir / "trials" / str(job_id) / "record.json").read_bytes() == raw[job_id]


def test_sigint_is_one_line_and_resumable(tiny_domain_pair, tmp_path, capsys):
    """Ctrl-C (SIGINT to every process) while both workers hold a finished trial: one line,
    exit 130, and the resumed search reaches exactly --max-evals; a second driver meanwhile
    is refused (finding 4 with two real drivers)."""
    log_dir, max_evals, marker = tmp_path / "search", 5, tmp_path / "record_written"
    args = argv(tiny_domain_pair, log_dir, "--workers", 2, max_evals=max_evals,
                evaluator="process")
    driver = start(args, hook_at=2, marker=marker)  # each worker's 2nd trial then sleeps
    try:
        wait_for(driver, lambda: markers(marker) == 2, "both workers' second records")
        err = refused(capsys, *args, "--resume")  # a second driver (this process)
        assert f"is in use by PID {driver.pid} on " in err and len(err.splitlines()) == 1, err
        os.killpg(driver.pid, signal.SIGINT)  # as Ctrl-C in a terminal: every process
        _, err = driver.communicate(timeout=60)
    finally:
        kill_group(driver.pid)
    assert driver.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("interrupted by SIGINT: 4 trials done") and "--resume" in err, err
    before = pd.read_csv(log_dir / RESULTS)
    assert len(before) == 2
    after, out = check_resumed(tiny_domain_pair, log_dir, max_evals, before, capsys,
                               evaluator="process")
    assert "recovered 2 finished trials" in out
    for job_id in after["job_id"]:
        assert read_record(log_dir / "trials" / str(job_id))["status"] == "ok"


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_a_signal_while_the_search_starts_is_one_line(tiny_domain_pair, tmp_path, how, delay):
    """Issue 24, finding 9: Ctrl-C or SIGTERM in the first second (the heavy imports) gave exit
    -2/-15 and a traceback or nothing on 7ffe20d; now one line, 130/143, nothing written."""
    log_dir = tmp_path / "search"
    driver = subprocess.Popen(
        [sys.executable, "search/run.py", "--problem", "none_deepmerge", "--data",
         str(tiny_domain_pair), "--log-dir", str(log_dir), "--max-evals", "1", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    driver.send_signal(how)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == (130 if how == signal.SIGINT else 143), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"interrupted by {how.name}"), err
    if "while starting" in err:  # before the driver's own handlers: nothing written
        assert not log_dir.exists()
