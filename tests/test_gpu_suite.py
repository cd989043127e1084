"""The prepared GPU suite runs end to end on the CPU in its dry-run mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_suite  # noqa: E402

from problems import problem_names  # noqa: E402

PROBLEMS = ["none_deepmerge", "mmd_deepmerge"]  # the real run takes every problem_names()


@pytest.mark.slow
def test_dry_run_writes_every_stage(tiny_domain_pair, tmp_path):
    assert set(PROBLEMS) <= set(problem_names())
    assert gpu_suite.main(["--dry-run", "--data", str(tiny_domain_pair), "--out", str(tmp_path),
                           "--problems", *PROBLEMS]) == 0
    figures = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert figures["dry_run"] is True
    single = {(row["problem"], row["variant"]) for row in figures["single"]}
    assert single == {(p, v) for p in PROBLEMS for v in ("fp32", "bf16")}
    assert all(row["source_img_per_s"] > 0 for row in figures["single"])
    assert [row["trials"] for row in figures["packed"]] == [1, 2]
    assert figures["mmd"]["exit"] == 0 and "overhead" in figures["mmd"]["stdout_tail"]
    assert "skipped" in figures["syncs"] and "skipped" in figures["ray"]
    assert "gpu_suite: done" in (tmp_path / "gpu_suite.txt").read_text()


def test_refuses_to_run_without_a_gpu_unless_dry(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_suite.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        gpu_suite.main(["--out", str(tmp_path)])
    assert "--dry-run" in capsys.readouterr().err
