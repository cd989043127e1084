"""The methods added after the paper's (issue 13) run real searches on tiny data.

Fisher + entropy on MMD and DANN, CDAN and SIDDA each search their own space through
``search/run.py`` (two random trials of two steps); the ResNet case covers the other backbone.
Their losses are tested on their own in ``test_fisher.py``, ``test_cdan.py`` and
``test_sinkhorn.py``.
"""

from __future__ import annotations

import json
import math

import pytest

from problems import get_problem, problem_names
from search.results import load_runs
from search.run import main as search_main

NEW_METHODS = ("mmdfe", "dannfe", "cdan", "sidda")
FAST = ["--max-evals", "2", "--evaluator", "serial", "--search", "random", "--set", "epochs=1",
        "--set", "max_batches_per_epoch=2", "--set", "batch_size=8", "--quiet"]


def test_every_new_method_has_both_backbones_listed(capsys):
    assert {f"{m}_{b}" for m in NEW_METHODS for b in ("deepmerge", "resnet")} <= set(
        problem_names())
    assert search_main(["--list"]) == 0
    listing = capsys.readouterr().out
    for method in NEW_METHODS:
        for short, backbone in (("deepmerge", "deepmerge"), ("resnet", "resnet18")):
            assert f"{method}_{short} (method={method}, backbone={backbone}" in listing


@pytest.mark.parametrize(
    "problem", [f"{m}_{b}" for b in ("deepmerge", "resnet") for m in NEW_METHODS])
def test_tiny_search(problem, tiny_domain_pair, tmp_path):
    log_dir = tmp_path / "search" / problem
    assert search_main(["--problem", problem, "--data", str(tiny_domain_pair), "--log-dir",
                        str(log_dir), *FAST]) == 0
    frame = load_runs(tmp_path / "search")
    assert len(frame) == 2 and (frame["status"] == "ok").all(), frame[["status"]]
    for name in get_problem(problem).hyperparameter_names:
        assert frame[f"p:{name}"].notna().all(), name
    for trial in (log_dir / "trials").iterdir():
        record = json.loads((trial / "record.json").read_text())
        assert record["status"] == "ok" and record["problem"] == problem
        for row in record["history"]:
            assert all(math.isfinite(row[k]) for k in ("train_loss", "train_cl_loss",
                                                       "train_tl_loss"))
