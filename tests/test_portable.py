"""Portable records and reports: no machine's paths in committed reports; a moved run folder
still loads, reports and resumes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.report import build_report
from galaxies.schema import domain_paths, write_domain
from search.results import load_runs
from search.run import main as search_main
from training.record import REPO_ROOT, portable_path, resolve_path

FAST = ["--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--set", "batch_size=8",
        "--quiet"]
# A path starting at the file-system root: "/" then at least two path components.
ABSOLUTE = re.compile(r"(?<![\w.:/\]])/(?:[\w.-]+/)+[\w.-]+")


def test_paths_are_repository_relative_under_it_and_absolute_outside():
    assert portable_path(REPO_ROOT / "data" / "benchmark") == "data/benchmark"
    assert portable_path("/somewhere/else/data") == "/somewhere/else/data"
    assert resolve_path("data/benchmark") == REPO_ROOT / "data" / "benchmark"
    assert resolve_path("/somewhere/else") == Path("/somewhere/else")
    assert ABSOLUTE.search("data in `/work/main/data/x`") and not ABSOLUTE.search(
        "[report](figures/a.png), 5/10 seeds ok, https://arxiv.org/abs/2011.03591")


def test_committed_reports_hold_no_absolute_path():
    files = subprocess.run(["git", "ls-files", "reports"], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    texts = [f for f in files if f.endswith((".md", ".csv", ".json", ".txt"))]
    assert texts, "no committed report found"
    hits = [f"{name}: {match.group(0)}" for name in texts
            for match in ABSOLUTE.finditer((REPO_ROOT / name).read_text())]
    assert not hits, "absolute paths in committed reports:\n" + "\n".join(hits[:10])


def test_a_moved_search_loads_reports_and_resumes(tiny_domain_pair, tmp_path):
    first = tmp_path / "first" / "none_deepmerge"
    assert search_main(["--problem", "none_deepmerge", "--data", str(tiny_domain_pair),
                        "--log-dir", str(first), "--max-evals", "2", "--evaluator", "serial",
                        *FAST]) == 0
    moved = tmp_path / "elsewhere" / "none_deepmerge"
    shutil.move(str(first.parent), str(moved.parent))
    assert not first.exists()

    frame = load_runs(moved)
    assert len(frame) == 2 and (frame["status"] == "ok").all()
    assert all(Path(d).is_dir() and str(moved) in d for d in frame["trial_dir"])
    report = build_report([moved], tmp_path / "report")
    assert "—" not in report.tables["table1"].loc["no-DA", ("DeepMerge", "target")]
    for name in ("trials.csv", "best_configs.csv", "report.md"):
        assert str(first) not in (tmp_path / "report" / name).read_text()

    # results.csv and the records point inside the run folder by relative paths only
    results = (moved / "results.csv").read_text()
    assert str(first) not in results and "trials/0/record.json" in results
    record = json.loads((moved / "trials" / "0" / "record.json").read_text())
    assert record["data"]["dir"] == portable_path(tiny_domain_pair)

    assert search_main(["--problem", "none_deepmerge", "--data", str(tiny_domain_pair),
                        "--log-dir", str(moved), "--max-evals", "3", "--evaluator", "serial",
                        "--resume", *FAST]) == 0
    assert len(load_runs(moved)) == 3


def test_resume_on_other_data_is_refused(tiny_domain_pair, tiny_domain_arrays, tmp_path, capsys):
    log_dir = tmp_path / "s"
    assert search_main(["--problem", "none_deepmerge", "--data", str(tiny_domain_pair),
                        "--log-dir", str(log_dir), "--max-evals", "1", "--evaluator", "serial",
                        *FAST]) == 0
    copy = tmp_path / "copy"  # the same data, moved: accepted
    shutil.copytree(tiny_domain_pair, copy)
    assert search_main(["--problem", "none_deepmerge", "--data", str(copy), "--log-dir",
                        str(log_dir), "--max-evals", "2", "--evaluator", "serial", "--resume",
                        *FAST]) == 0
    other = tmp_path / "other"
    other.mkdir()
    for domain, data in tiny_domain_arrays.items():
        data.attrs["seed"] = 99
        write_domain(domain_paths(other)[domain], data)
    with pytest.raises(SystemExit) as info:
        search_main(["--problem", "none_deepmerge", "--data", str(other), "--log-dir",
                     str(log_dir), "--max-evals", "3", "--resume", *FAST])
    assert info.value.code == 2
    assert "other data" in capsys.readouterr().err
