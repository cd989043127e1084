"""analysis/report.py writes nothing outside ``--out`` (issue 15, finding 9), atomically, and
turns a read-only or full ``--out`` into one line (finding 3).

The search folder is crafted by hand (one ``ok`` trial record, its ``results.csv`` row and
``search.json``), so the record's ``problem`` can be anything a hostile file holds.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from fs_helpers import tmpfs

from analysis.report import build_report, inside, main, safe_name
from training.config import default_config
from training.record import SPLIT_KEYS

HOSTILE = "x/../../../../pwn"


def crafted_search(root: Path, problem: str) -> Path:
    """``root/search/crafted``: a one-trial search whose record names ``problem``."""
    log = root / "search" / "crafted"
    trial = log / "trials" / "0"
    trial.mkdir(parents=True)
    metrics = {split: {"accuracy": 0.75, "precision": 0.7, "recall": 0.8, "f1": 0.74,
                       "brier": 0.2, "auc": 0.8} for split in SPLIT_KEYS}
    record = {"problem": problem, "method": "none", "backbone": "deepmerge",
              "config": default_config("none", "deepmerge").to_dict(), "seed": 1,
              "status": "ok", "failure": None, "error": None, "traceback": None,
              "metrics": metrics, "diagnostics": {"source_val_loss": 0.5}, "history": [],
              "best_epoch": 1, "epochs_run": 1, "wall_time_s": 1.0, "device": "cpu",
              "data": {"dir": None}, "files": {}}
    (trial / "record.json").write_text(json.dumps(record))
    (log / "results.csv").write_text("p:lr,objective,job_id,m:status\n0.001,0.75,0,ok\n")
    (log / "search.json").write_text(json.dumps({
        "problem": problem, "method": "none", "backbone": "deepmerge",
        "objective": "source_val_accuracy"}))
    return root


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_safe_name():
    assert safe_name("mmd_deepmerge") == "mmd_deepmerge"
    assert safe_name(HOSTILE) == "x_._._._._pwn"
    assert safe_name("/etc/passwd") == "_etc_passwd"
    assert safe_name("..") == "unnamed" and safe_name("") == "unnamed"
    assert safe_name("a b;c$(d)") == "a_b_c__d_"
    for text in (HOSTILE, "../..", "/abs", ".hidden", "a/..", "\x00"):
        name = safe_name(text)
        assert "/" not in name and ".." not in name and not name.startswith(".")


def test_inside_refuses_paths_outside(tmp_path):
    assert inside(tmp_path, tmp_path / "figures" / "a.png") == tmp_path / "figures" / "a.png"
    for path in (tmp_path / ".." / "a.png", Path("/etc/x"), tmp_path / "a" / ".." / ".." / "b"):
        with pytest.raises(ValueError, match="outside --out"):
            inside(tmp_path, path)


def test_hostile_problem_writes_nothing_outside_out(tmp_path):
    """The reported case wrote ``pwn.png``/``pwn.pdf`` outside ``--out``."""
    base = tmp_path / "a" / "b" / "c"
    runs = crafted_search(base / "runs", HOSTILE)
    out = base / "out" / "report"
    before = _files(tmp_path)
    report = build_report([runs], out)
    written = _files(tmp_path) - before
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written), written
    assert not [p for p in _files(tmp_path) if "pwn" in p.name and out not in p.parents]
    assert (out / "figures" / "progress_x_._._._._pwn.png").stat().st_size > 1000
    assert all(Path(p).resolve().is_relative_to(out.resolve()) for p in report.files)
    assert not [p for p in _files(tmp_path) if ".tmp" in p.name]




def _one_line(err: str) -> str:
    assert "Traceback" not in err and "usage:" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_report_into_a_read_only_filesystem(tmp_path, capsys):
    runs = crafted_search(tmp_path / "runs", "none_deepmerge")
    with tmpfs(tmp_path / "ro", read_only=True) as ro, pytest.raises(SystemExit) as info:
        main(["--runs", str(runs), "--out", str(ro / "report")])
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line == f"error: cannot write {ro / 'report'}: Read-only file system"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_report_into_a_read_only_folder_chmod(tmp_path, capsys):
    runs = crafted_search(tmp_path / "runs", "none_deepmerge")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as info:
            main(["--runs", str(runs), "--out", str(locked / "report")])
    finally:
        locked.chmod(0o755)
    assert info.value.code == 2 and "Permission denied" in _one_line(capsys.readouterr().err)


def test_report_permission_error_monkeypatched(tmp_path, capsys, monkeypatch):
    import galaxies.atomic as atomic

    runs = crafted_search(tmp_path / "runs", "none_deepmerge")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(SystemExit) as info:
        main(["--runs", str(runs), "--out", str(tmp_path / "report")])
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line == f"error: cannot write {tmp_path / 'report'}: Permission denied"


def test_report_on_a_full_disk_leaves_no_truncated_table(tmp_path, capsys, monkeypatch):
    import galaxies.atomic as atomic

    runs = crafted_search(tmp_path / "runs", "none_deepmerge")
    out = tmp_path / "report"
    assert main(["--runs", str(runs), "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in _files(out)}
    capsys.readouterr()

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "fsync_path", full)  # every write's data is refused
    with pytest.raises(SystemExit) as info:
        main(["--runs", str(runs), "--out", str(out)])
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line == f"error: cannot write {out / 'trials.csv'}: No space left on device"
    assert {p: p.read_bytes() for p in _files(out)} == before  # old report intact, no tmp
