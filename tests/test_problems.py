"""Problems registry: names, spaces, and defaults equal to ``default_config``.

Expectations come from the method and backbone specs, never from copied lists, so that a new
method or backbone is tested without editing this file.
"""

from __future__ import annotations

import ConfigSpace.hyperparameters as csh
import pytest

from models.registry import backbone_specs, get_backbone
from problems import UnknownProblemError, all_problems, get_problem, problem_names
from training.config import COMMON, TrainConfig, default_config, used_fields
from training.registry import get_method, method_names

EXPECTED = {f"{method}_{backbone.problem_name}"
            for method in method_names() for backbone in backbone_specs()}


def searched(method: str, backbone: str) -> set[str]:
    """What the specs ask to search: every ``Hyper`` with a range, common or the two specs'."""
    own = (*get_method(method).hyperparameters, *get_backbone(backbone).hyperparameters)
    return {hyper.name for hyper in (*COMMON, *own) if hyper.search is not None}


def test_registry_names():
    assert {p.name for p in all_problems()} == EXPECTED == set(problem_names())
    assert len(problem_names()) == len(method_names()) * len(backbone_specs())
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
    names = set(problem.hyperparameter_names)
    assert names == searched(problem.method, problem.backbone)
    assert names <= set(used_fields(problem.method, problem.backbone))
    assert "patience" not in names  # every method gets the same stopping rule (issue 25)
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
    assert "lambda_tl" in dann
    assert "lambda_tl" not in get_problem("sidda_deepmerge").hp_problem.space  # learned


def test_subspace_drops_fixed_names_only():
    problem = get_problem("dann_resnet")
    sub = problem.subspace(["lr", "grl_gamma"])
    full = searched("dann", "resnet18")
    assert set(sub.hyperparameter_names) == full - {"lr", "grl_gamma"}
    assert set(problem.hyperparameter_names) == full  # the registry is untouched


def test_describe_has_one_row_per_hyperparameter():
    rows = get_problem("none_resnet").describe()
    assert {row["name"] for row in rows} == searched("none", "resnet18")
    assert all({"type", "range", "default"} <= set(row) for row in rows)
