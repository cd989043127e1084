"""Search spaces, derived from the specs: each range sits next to its default in one ``Hyper``.

The space of ``<method>_<backbone>`` holds, in order, the common hyperparameters that have a
range (:data:`training.config.COMMON`; the batch sizes come from the backbone spec), then the
method spec's searched ones, then the backbone spec's own. When several declare a range for
one field, the most specific wins (method, then backbone, then common). Every default is the
problem's default configuration, so a problem's default configuration *is* the baseline run.
Ranges follow DeepHyper 0.13's shortcuts: ``(low, high)`` real/int range,
``(low, high, "log-uniform")``, ``[...]`` categorical (a list of only numbers becomes an
*ordinal*, which is what we want for ``batch_size``).
"""

from __future__ import annotations

from deephyper.hpo import HpProblem

from models.registry import BackboneSpec
from training.config import COMMON, TrainConfig
from training.registry import MethodSpec


def searched_ranges(method: MethodSpec, backbone: BackboneSpec) -> dict[str, object]:
    """``{name: range}`` of the searched hyperparameters, in the order described above."""
    specific = {h.name: h.search for h in (*backbone.hyperparameters, *method.hyperparameters)
                if h.search is not None}
    ranges: dict[str, object] = {}
    for hyper in COMMON:
        found = specific.get(hyper.name, hyper.search)
        if found is not None:
            ranges[hyper.name] = found
    for hyper in (*method.hyperparameters, *backbone.hyperparameters):
        if hyper.name not in ranges and hyper.search is not None:
            ranges[hyper.name] = specific[hyper.name]
    return ranges


def build_space(method: MethodSpec, backbone: BackboneSpec, defaults: TrainConfig) -> HpProblem:
    """The full ``HpProblem`` of ``method × backbone`` with every default from ``defaults``."""
    hp = HpProblem()
    for name, search in searched_ranges(method, backbone).items():
        hp.add_hyperparameter(search, name, default_value=getattr(defaults, name))
    return hp
