"""docs/EXTENDING.md, checked: a new method, validator or backbone is one spec, nothing else.

Each test registers throw-away specs for its duration only (``registered(spec)``) and shows,
with no other file edited, that every list derived from the registries picks them up: the
problem's search space, ``search/run.py --list`` and ``--help``, the trial record, DeepHyper's
``results.csv`` and Table 1. Tiny data (``tiny_domain_pair``), one epoch, two batches.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_registry import MeanGapLoss  # the throw-away transfer loss of tests/test_registry.py
from torch import nn

from analysis import tables
from models.base import Backbone
from models.heads import ClassifierHead
from models.registry import BACKBONES, BackboneSpec, Hyper
from problems import get_problem, problem_names
from search.results import load_runs
from search.run import main as search_main
from search.runner import metadata_keys
from training.label_free import DiagnosticSpec, record_diagnostic_names, registered_diagnostic
from training.registry import METHODS, MethodSpec, method_names
from training.train import main as train_main

FAST = ["--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--set", "batch_size=8",
        "--quiet"]


# --- a method and a validator together ----------------------------------------------------


GAP = MethodSpec(
    name="gapx", label="Mean gap (a test's)", color="#BCBD22", order=999,
    build=lambda config, feature_dim: MeanGapLoss(config.gapx_power),
    summary="gapx: the distance between the feature means (a test's)",
    hyperparameters=(
        Hyper("lambda_tl", 0.1, (1e-2, 1.0, "log-uniform")),
        Hyper("gapx_power", 2.0, (1.0, 3.0), rule="> 0", doc="power of the mean gap"),
    ),
)


def mean_target_p(outputs) -> float:
    return float(np.mean(outputs.target_prob_merger))


VALIDATOR = DiagnosticSpec(
    "target_val_mean_px", mean_target_p, direction="higher", objective="mean_target_px",
    description="mean predicted merger probability of the target validation split (a test's)")


def test_a_throwaway_method_and_validator_reach_every_list(tiny_domain_pair, tmp_path, capsys):
    name, objective = VALIDATOR.name, VALIDATOR.objective
    with METHODS.registered(GAP), registered_diagnostic(VALIDATOR):
        # the problem's search space
        assert "gapx_deepmerge" in problem_names() and "gapx_resnet" in problem_names()
        space = get_problem("gapx_deepmerge").hp_problem
        assert "gapx_power" in space.hyperparameter_names
        assert space.default_configuration["gapx_power"] == 2.0

        # --list names the problems and the method's hyperparameter; --help the objective
        assert search_main(["--list"]) == 0
        listing = capsys.readouterr().out
        assert "gapx_deepmerge (method=gapx, backbone=deepmerge)" in listing
        assert "gapx_resnet (method=gapx, backbone=resnet18)" in listing
        assert "gapx_power" in listing
        with pytest.raises(SystemExit):
            search_main(["--help"])
        assert objective in capsys.readouterr().out

        # one search trial, scored by the validator
        log_dir = tmp_path / "search" / "gapx_deepmerge"
        assert search_main(["--problem", "gapx_deepmerge", "--data", str(tiny_domain_pair),
                            "--log-dir", str(log_dir), "--objective", objective,
                            "--evaluator", "serial", "--search", "random", "--max-evals", "1",
                            *FAST]) == 0
        record = json.loads((log_dir / "trials/0/record.json").read_text())
        assert record["status"] == "ok"
        assert (record["method"], record["problem"]) == ("gapx", "gapx_deepmerge")
        power = record["config"]["gapx_power"]
        value = record["diagnostics"][name]
        assert list(record["diagnostics"]) == record_diagnostic_names()
        assert math.isfinite(value) and 0 <= value <= 1

        # DeepHyper's results.csv: the hyperparameter (p:) and the validator (m:)
        results = pd.read_csv(log_dir / "results.csv")
        assert results.loc[0, "p:gapx_power"] == pytest.approx(power)
        assert results.loc[0, f"m:{name}"] == pytest.approx(value)
        assert results.loc[0, "objective"] == pytest.approx(value)

        # Table 1 with the validator's selection strategy: the method's row holds the trial
        frame = load_runs(tmp_path / "search")
        table = tables.table1(frame, strategy=objective)
        assert GAP.label in table.index
        trial = frame.iloc[0]
        assert table.loc[GAP.label, ("DeepMerge", "target")] == \
            f"{100 * trial['target_test_accuracy']:.1f}"
        assert (table.drop(index=GAP.label) == tables.MISSING).all().all()
    # gone afterwards
    assert "gapx" not in method_names() and "gapx_deepmerge" not in problem_names()
    assert name not in metadata_keys()


# --- a backbone -------------------------------------------------------------------------------


class TinyBackbone(Backbone):
    """Throw-away backbone: one 3×3 convolution, global average pooling, 4 features."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, kernel_size=3, padding=1),
                                  nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.feature_dim = 4

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


TINY = BackboneSpec(
    name="tinyx", problem_name="tinyx", label="Tiny (a test's)", order=999,
    build=lambda config: TinyBackbone(),
    build_head=lambda feature_dim, config: ClassifierHead(feature_dim, hidden=(8,)),
    feature_dim=4,
    hyperparameters=(Hyper("batch_size", 8, [4, 8]),),
)


def test_a_throwaway_backbone_trains_and_is_listed(tiny_domain_pair, tmp_path, capsys):
    with BACKBONES.registered(TINY):
        assert {f"{m}_tinyx" for m in method_names()} <= set(problem_names())
        assert search_main(["--list"]) == 0
        listing = capsys.readouterr().out
        assert "mmd_tinyx (method=mmd, backbone=tinyx)" in listing
        assert "none_tinyx (method=none, backbone=tinyx)" in listing

        out = tmp_path / "trial"
        assert train_main(["--problem", "mmd_tinyx", "--data", str(tiny_domain_pair),
                           "--out", str(out), "--seed", "1", *FAST]) == 0
        record = json.loads((out / "record.json").read_text())
        assert record["status"] == "ok"
        assert (record["backbone"], record["problem"]) == ("tinyx", "mmd_tinyx")
        assert record["config"]["batch_size"] == 8 and record["epochs_run"] == 1
        assert math.isfinite(record["metrics"]["target_test"]["accuracy"])
    assert "mmd_tinyx" not in problem_names()
