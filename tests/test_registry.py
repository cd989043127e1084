"""A method registered in a test reaches every layer: config, --list, a search, Table 1, Figure 1.

Nothing outside this file names the toy method: the specs are the only place where a method
is declared. The plugin test does the same from a module outside the repository, in fresh
processes (``$GALAXY_DA_PLUGINS``), as a user adding their own method would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from analysis import figures, tables
from models import Hyper
from problems import get_problem, problem_names
from search.results import load_runs
from search.run import main as search_main
from training.config import ConfigError, TrainConfig, default_config
from training.registry import MethodSpec, method_names, register_method, unregister_method
from training.transfer import TransferLoss

REPO = Path(__file__).resolve().parents[1]
FAST = ["--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--set", "batch_size=8",
        "--quiet"]


class MeanGapLoss(TransferLoss):
    """Toy transfer loss: ``‖mean(f_s) - mean(f_t)‖^p`` (linear-kernel MMD to the power p)."""

    def __init__(self, power: float):
        super().__init__()
        self.power = power

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        return (f_s.mean(0) - f_t.mean(0)).norm() ** self.power


TOY = MethodSpec(
    name="toy", label="Toy gap", color="#17BECF", order=999,
    build=lambda config, feature_dim: MeanGapLoss(config.toy_power),
    summary="toy: the distance between the feature means",
    hyperparameters=(
        Hyper("lambda_tl", 0.1, (1e-2, 1.0, "log-uniform")),
        Hyper("toy_power", 2.0, (1.0, 3.0), rule="> 0", doc="power of the mean gap"),
    ),
)


@pytest.fixture
def toy_method():
    register_method(TOY)
    try:
        yield TOY
    finally:
        unregister_method(TOY.name)


def test_toy_method_joins_config_and_problems(toy_method):
    assert method_names()[-1] == "toy" and "toy_deepmerge" in problem_names()
    config = default_config("toy", "resnet18")
    assert (config.lambda_tl, config.toy_power, config.bottleneck_dim) == (0.1, 2.0, 256)
    assert default_config("mmd").toy_power == 2.0  # every config knows every field
    with pytest.raises(ConfigError, match="'toy_power'.*> 0"):
        TrainConfig.from_dict({"method": "toy", "toy_power": -1.0})
    problem = get_problem("toy_resnet")
    assert {"lambda_tl", "toy_power", "lr", "batch_size"} <= set(problem.hyperparameter_names)
    assert problem.hp_problem.default_configuration["toy_power"] == 2.0


def test_a_label_or_colour_already_taken_is_refused():
    """Issue 23: two arms with one label or one colour could not be told apart."""
    from dataclasses import replace

    for clash in ({"label": "MMD"}, {"color": "#dd8452"}):
        with pytest.raises(ValueError, match="is already 'mmd'"):
            register_method(replace(TOY, **clash))
    assert "toy" not in method_names()


def test_unregistered_method_is_gone(toy_method):
    unregister_method("toy")
    assert "toy" not in method_names()
    with pytest.raises(ConfigError, match="'method'.*none, .*mmd, dann"):
        default_config("toy")
    register_method(TOY)  # for the fixture's teardown


def test_toy_method_in_list_search_table1_and_figure1(toy_method, tiny_domain_pair, tmp_path,
                                                      capsys):
    assert search_main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "toy_deepmerge (method=toy, backbone=deepmerge)" in listing and "toy_power" in listing

    log_dir = tmp_path / "search" / "toy_deepmerge"
    assert search_main(["--problem", "toy_deepmerge", "--data", str(tiny_domain_pair),
                        "--log-dir", str(log_dir), "--max-evals", "2", "--evaluator", "serial",
                        *FAST]) == 0
    frame = load_runs(tmp_path / "search")
    assert (frame["status"] == "ok").all() and len(frame) == 2
    assert frame["p:toy_power"].notna().all()

    table = tables.table1(frame)
    assert "Toy gap" in table.index
    cell = table.loc["Toy gap", ("DeepMerge", "target")]
    best = frame.sort_values(["objective", "job_id"], ascending=[False, True]).iloc[0]
    assert cell == f"{100 * best['target_test_accuracy']:.1f}"
    assert (table.drop(index="Toy gap") == tables.MISSING).all().all()

    figure = figures.figure1(frame, "deepmerge")
    bars = figure.axes[0]
    containers = {c.get_label(): c for c in bars.containers}
    assert set(containers) == {"toy source", "toy target"}
    heights = [p.get_height() for p in containers["toy target"]]
    assert heights[0] == pytest.approx(best["target_test_accuracy"])
    assert all(p.get_facecolor()[:3] == pytest.approx((0x17 / 255, 0xBE / 255, 0xCF / 255))
               for p in containers["toy target"])
    legend = [t.get_text() for t in bars.get_legend().get_texts()]
    assert "Toy gap" in legend


PLUGIN = '''
    """A user's own method, outside the repository."""
    from models.registry import Hyper
    from training.registry import MethodSpec, register_method
    from training.transfer import TransferLoss


    class Gap(TransferLoss):
        def forward(self, f_s, f_t):
            return (f_s.mean(0) - f_t.mean(0)).pow(2).sum()


    register_method(MethodSpec(name="gap", label="gap", color="k", order=60,
                               build=lambda config, dim: Gap(),
                               hyperparameters=(Hyper("lambda_tl", 0.5, (0.1, 1.0)),)))
'''


def test_plugin_module_registers_in_fresh_processes(tiny_domain_pair, tmp_path):
    (tmp_path / "my_methods.py").write_text(textwrap.dedent(PLUGIN))
    env = {**os.environ, "GALAXY_DA_PLUGINS": "my_methods",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    listing = subprocess.run([sys.executable, "search/run.py", "--list"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "gap_deepmerge (method=gap" in listing.stdout
    trained = subprocess.run(
        [sys.executable, "training/train.py", "--problem", "gap_deepmerge", "--data",
         str(tiny_domain_pair), "--out", str(tmp_path / "trial"), "--quiet", "--set",
         "epochs=1", "--set", "max_batches_per_epoch=2", "--set", "batch_size=8"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert trained.returncode == 0, trained.stderr
    assert '"problem": "gap_deepmerge"' in trained.stdout
