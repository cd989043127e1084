import dataclasses

import numpy as np
import pytest

from training.config import ConfigError, TrainConfig, default_config, parse_set_args

CONTRACT_FIELDS = [
    "backbone",
    "method",
    "lr",
    "weight_decay",
    "batch_size",
    "epochs",
    "onecycle_pct_start",
    "onecycle_div_factor",
    "onecycle_final_div_factor",
    "lambda_tl",
    "patience",
    "seed",
    "mmd_bandwidths",
    "mmd_base",
    "mmd_mul",
    "mmd_num",
    "mmd_estimator",
    "grl_schedule",
    "grl_coeff",
    "grl_gamma",
    "dc_lr_mult",
    "bottleneck_dim",
    "max_batches_per_epoch",
    "device",
]


def test_has_contract_fields():
    assert set(CONTRACT_FIELDS) <= set(TrainConfig.keys())


def test_frozen():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.1


def test_misspelled_key_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown hyperparameter 'lamda_tl'.*'lambda_tl'"):
        TrainConfig.from_dict({"lamda_tl": 1.0})
    with pytest.raises(ConfigError, match="lamda_tl"):
        TrainConfig().replace(lamda_tl=1.0)


@pytest.mark.parametrize(
    "key,value,pattern",
    [
        ("lr", "fast", "'lr'"),
        ("lr", -1.0, "'lr'.*> 0"),
        ("batch_size", 1, "'batch_size'"),
        ("batch_size", 12.5, "'batch_size'"),
        ("batch_size", True, "'batch_size'"),
        ("method", "nosuch", "'method'.*none, mmd, dann, jointbn, adabn, coral, mmdfe"),
        ("backbone", "vgg", "'backbone'.*deepmerge, resnet18"),
        ("mmd_bandwidths", "fixed", "'mmd_bandwidths'.*family, authors"),
        ("device", "gpu", "'device'"),
    ],
)
def test_bad_values_named(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig.from_dict({key: value})


def test_round_trip_and_numpy_values():
    cfg = default_config("dann", "resnet18").replace(lr=3e-4, seed=7)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    cfg2 = TrainConfig.from_dict(
        {"method": "mmd", "batch_size": np.int64(64), "lr": np.float64(1e-2)}
    )
    assert type(cfg2.batch_size) is int and type(cfg2.lr) is float
    assert cfg2.lambda_tl == default_config("mmd").lambda_tl  # missing keys: method defaults


def test_from_strings():
    cfg = TrainConfig.from_strings(parse_set_args(["lr=1e-3", "method=dann", "epochs = 3"]))
    assert cfg.lr == 1e-3 and cfg.method == "dann" and cfg.epochs == 3
    with pytest.raises(ConfigError, match="'epochs'"):
        TrainConfig.from_strings({"epochs": "three"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["lr"])


@pytest.mark.parametrize("method", ["none", "mmd", "dann"])
@pytest.mark.parametrize("backbone", ["deepmerge", "resnet18"])
def test_default_configs_valid(method, backbone):
    cfg = default_config(method, backbone)
    assert cfg.method == method and cfg.backbone == backbone
    assert (cfg.lambda_tl == 0) == (method == "none")


@pytest.mark.parametrize("key", ["lr", "lambda_tl", "weight_decay", "onecycle_div_factor"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_values_are_refused_by_name(key, value):
    with pytest.raises(ConfigError, match=f"invalid value for '{key}'.*finite"):
        TrainConfig.from_strings({key: value})
