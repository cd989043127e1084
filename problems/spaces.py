"""Search spaces: one line per hyperparameter, its range next to its default.

Every default is read from ``training.config.default_config(method, backbone)`` (never
duplicated here), so a problem's default configuration *is* the baseline run. Ranges follow
DeepHyper 0.13's shortcuts: ``(low, high)`` real/int range, ``(low, high, "log-uniform")``,
``[...]`` categorical (a list of only numbers becomes an *ordinal*, which is what we want for
``batch_size``).
"""

from __future__ import annotations

from deephyper.hpo import HpProblem

from training.config import TrainConfig

BATCH_SIZES = {"deepmerge": [32, 64, 128, 256], "resnet18": [16, 32, 64, 128]}


def add_common(hp: HpProblem, d: TrainConfig) -> None:
    """Optimiser, schedule and early stopping: searched for every method."""
    hp.add_hyperparameter((1e-5, 1e-2, "log-uniform"), "lr", default_value=d.lr)
    hp.add_hyperparameter((1e-6, 1e-2, "log-uniform"), "weight_decay", default_value=d.weight_decay)
    hp.add_hyperparameter(BATCH_SIZES[d.backbone], "batch_size", default_value=d.batch_size)
    hp.add_hyperparameter((2, 10), "patience", default_value=d.patience)
    hp.add_hyperparameter((0.1, 0.5), "onecycle_pct_start", default_value=d.onecycle_pct_start)
    hp.add_hyperparameter(
        (5.0, 100.0, "log-uniform"), "onecycle_div_factor", default_value=d.onecycle_div_factor
    )
    hp.add_hyperparameter(
        (1e2, 1e5, "log-uniform"), "onecycle_final_div_factor",
        default_value=d.onecycle_final_div_factor,
    )


def add_mmd(hp: HpProblem, d: TrainConfig) -> None:
    """Multi-kernel MMD (Gretton et al. 2012): weight and Gaussian bandwidth family."""
    hp.add_hyperparameter((1e-2, 10.0, "log-uniform"), "lambda_tl", default_value=d.lambda_tl)
    hp.add_hyperparameter(["family", "authors"], "mmd_bandwidths", default_value=d.mmd_bandwidths)
    hp.add_hyperparameter(["median", "mean"], "mmd_base", default_value=d.mmd_base)
    hp.add_hyperparameter((1.5, 3.0), "mmd_mul", default_value=d.mmd_mul)
    hp.add_hyperparameter((3, 7), "mmd_num", default_value=d.mmd_num)
    hp.add_hyperparameter(["unbiased", "biased"], "mmd_estimator", default_value=d.mmd_estimator)


def add_dann(hp: HpProblem, d: TrainConfig) -> None:
    """Domain-adversarial training (Ganin et al. 2016): weight, GRL schedule, critic's lr."""
    hp.add_hyperparameter((1e-2, 10.0, "log-uniform"), "lambda_tl", default_value=d.lambda_tl)
    hp.add_hyperparameter(["ganin", "constant"], "grl_schedule", default_value=d.grl_schedule)
    hp.add_hyperparameter((1.0, 20.0), "grl_gamma", default_value=d.grl_gamma)
    hp.add_hyperparameter((0.1, 2.0), "grl_coeff", default_value=d.grl_coeff)
    hp.add_hyperparameter((0.5, 20.0, "log-uniform"), "dc_lr_mult", default_value=d.dc_lr_mult)


METHOD_SPACES = {
    "none": (add_common,),
    "mmd": (add_common, add_mmd),
    "dann": (add_common, add_dann),
}


def build_space(method: str, defaults: TrainConfig) -> HpProblem:
    """The full ``HpProblem`` of ``method`` with every default taken from ``defaults``."""
    hp = HpProblem()
    for add in METHOD_SPACES[method]:
        add(hp, defaults)
    return hp
