"""Problems registry: names, spaces, and defaults equal to ``default_config``."""

from __future__ import annotations

import ConfigSpace.hyperparameters as csh
import pytest

from problems import UnknownProblemError, all_problems, get_problem, problem_names
from training.config import TrainConfig, default_config

EXPECTED = {f"{method}_{backbone}"
            for method in ("none", "jointbn", "adabn", "mmd", "dann", "coral", "mmdfe",
                           "dannfe", "cdan", "sidda", "oracle")
            for backbone in ("deepmerge", "resnet")}
# patience is not searched: every method gets the same stopping rule (issue 25).
COMMON = {"lr", "weight_decay", "batch_size", "onecycle_pct_start",
          "onecycle_div_factor", "onecycle_final_div_factor"}
BY_METHOD = {
    "none": COMMON,
    "mmd": COMMON | {"lambda_tl", "mmd_bandwidths", "mmd_base", "mmd_mul", "mmd_num",
                     "mmd_estimator"},
    "dann": COMMON | {"lambda_tl", "grl_schedule", "grl_gamma", "grl_coeff", "dc_lr_mult"},
    "coral": COMMON | {"lambda_tl"},
    "mmdfe": COMMON | {"lambda_tl", "mmd_bandwidths", "mmd_base", "mmd_mul", "mmd_num",
                       "mmd_estimator", "fisher_intra", "fisher_inter", "entropy_weight"},
    "dannfe": COMMON | {"lambda_tl", "grl_schedule", "grl_gamma", "grl_coeff", "dc_lr_mult",
                        "fisher_intra", "fisher_inter", "entropy_weight"},
    "cdan": COMMON | {"lambda_tl", "grl_schedule", "grl_gamma", "grl_coeff", "dc_lr_mult",
                      "cdan_entropy"},
    "sidda": COMMON,  # lambda_tl is learned, not searched
    "jointbn": COMMON,
    "adabn": COMMON,
    "oracle": COMMON,
}


def test_registry_names():
    assert {p.name for p in all_problems()} == EXPECTED == set(problem_names())
    assert get_problem("mmd_resnet").backbone == "resnet18"
    assert get_problem("dann_deepmerge").method == "dann"


def test_unknown_problem_lists_valid_names():
    with pytest.raises(UnknownProblemError) as info:
        get_problem("mmd_vgg")
    for name in EXPECTED:
        assert name in str(info.value)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_space_and_defaults_match_default_config(name):
    problem = get_problem(name)
    assert set(problem.hyperparameter_names) == BY_METHOD[problem.method]
    baseline = default_config(problem.method, problem.backbone).to_dict()
    defaults = problem.hp_problem.default_configuration
    for key, value in defaults.items():
        assert value == pytest.approx(baseline[key]) if isinstance(value, float) else \
            value == baseline[key], key
    # the default configuration plus the fixed fields is exactly the baseline run
    config = TrainConfig.from_dict({**baseline, **defaults})
    assert config == default_config(problem.method, problem.backbone)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_sample_is_a_valid_config(name):
    problem = get_problem(name)
    baseline = problem.defaults.to_dict()
    space = problem.hp_problem
    space.set_seed(0)
    for sample in space.sample(20):
        TrainConfig.from_dict({**baseline, **sample})


def test_kinds_of_hyperparameters():
    space = get_problem("mmd_deepmerge").hp_problem.space
    assert isinstance(space["batch_size"], csh.OrdinalHyperparameter)
    assert isinstance(space["mmd_bandwidths"], csh.CategoricalHyperparameter)
    assert set(space["mmd_bandwidths"].choices) == {"family", "authors"}
    assert set(space["mmd_base"].choices) == {"median", "mean"}
    assert space["lr"].log and space["lambda_tl"].log
    dann = get_problem("dann_resnet").hp_problem.space
    assert set(dann["grl_schedule"].choices) == {"ganin", "constant"}


def test_subspace_drops_fixed_names_only():
    problem = get_problem("dann_resnet")
    sub = problem.subspace(["lr", "grl_gamma"])
    assert set(sub.hyperparameter_names) == BY_METHOD["dann"] - {"lr", "grl_gamma"}
    assert set(problem.hyperparameter_names) == BY_METHOD["dann"]  # the registry is untouched


def test_describe_has_one_row_per_hyperparameter():
    rows = get_problem("none_resnet").describe()
    assert {row["name"] for row in rows} == COMMON
    assert all({"type", "range", "default"} <= set(row) for row in rows)
