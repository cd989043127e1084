"""How close a tiny trial must come to the committed reference on a CPU it was not made on.

The reference (``records.json``) was made on an AMD EPYC with AVX2 kernels. Other CPUs take
other kernels (oneDNN, ATen and MKL pick them by instruction set and vendor), so the order of
floating-point operations, and with it the last bits of every number, differs; a tiny trial
(3 epochs of 3 batches of 8) then drifts from the reference, more with every step, most for
ResNet18 on batches of 8. Equality of two runs on one machine stays exact
(``tests/test_training.py``); across kernel paths the reference is compared at a tolerance
derived from the drift *measured* between paths (``drift.json``, written by
``measure_drift.py``):

- numbers are grouped by stage: ``epoch1``, ``epoch2``, ``epoch3`` (a history row) and
  ``final`` (the metrics and diagnostics of the best weights);
- a number's deviation is ``|got - want| / max(|want|, 1e-3)``;
- the tolerance of a ``(problem, stage)`` is :data:`SAFETY` times the largest deviation
  measured on any kernel path in ``drift.json``, and never below :data:`FLOOR`.

:data:`FLOOR` (1e-2) is 2.5 times the largest drift reported for the Intel Xeon (AVX-512,
AMX) kind, whose per-stage drift is not in ``drift.json`` (4e-3 relative, ``none_resnet``
``source_test.brier`` under the AVX2 emulation; 1.4e-3 for ``none_deepmerge`` natively;
issue 22). ``tests/test_reference.py`` shows that these tolerances still catch a 5 % change
of a default learning rate, another order of random draws and a changed loss.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: Tolerance = SAFETY x the largest drift measured between kernel paths for that stage.
SAFETY = 5.0
#: No tolerance is tighter than this (see the module docstring).
FLOOR = 1e-2
#: Denominator floor of the relative deviation (losses and Brier scores near zero).
SCALE_FLOOR = 1e-3


def stages(view: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{"epoch1": {key: value}, ..., "final": {...}}``: the numbers of a reference view."""
    out: dict[str, dict[str, float]] = {}
    for index, row in enumerate(view["history"]):
        out[f"epoch{index + 1}"] = {k: v for k, v in row.items() if k != "epoch"}
    out["final"] = {**_flatten(view["metrics"], "metrics"),
                    **_flatten(view["diagnostics"], "diagnostics")}
    return out


def deviation(got: float | None, want: float | None) -> float:
    """``|got - want| / max(|want|, 1e-3)``; 0 when both are ``None``, inf when one is."""
    if got is None or want is None:
        return 0.0 if got is want else math.inf
    if not (math.isfinite(got) and math.isfinite(want)):
        return 0.0 if got == want or (math.isnan(got) and math.isnan(want)) else math.inf
    return abs(got - want) / max(abs(want), SCALE_FLOOR)


def stage_drift(got: dict[str, Any], want: dict[str, Any]) -> dict[str, float]:
    """The largest :func:`deviation` of each stage between two views of one problem."""
    mine, theirs = stages(got), stages(want)
    return {stage: max((deviation(mine.get(stage, {}).get(key), value)
                        for key, value in numbers.items()), default=0.0)
            for stage, numbers in theirs.items()}


def load_drift(path: Path = HERE / "drift.json") -> dict[str, Any]:
    """``drift.json``: ``{"paths": {name: {"machine", "command", "drift": {problem: {stage:
    deviation}}}}}``."""
    return json.loads(path.read_text())


def tolerances(drift: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{problem: {stage: tolerance}}`` from every measured path of ``drift``."""
    out: dict[str, dict[str, float]] = {}
    for measured in drift["paths"].values():
        for problem, by_stage in measured["drift"].items():
            for stage, value in by_stage.items():
                tol = max(SAFETY * value, FLOOR)
                mine = out.setdefault(problem, {})
                mine[stage] = max(mine.get(stage, FLOOR), tol)
    return out


def mismatches(got: dict[str, Any], want: dict[str, Any],
               tolerance: dict[str, float]) -> list[str]:
    """Every number of ``got`` farther from ``want`` than its stage's tolerance allows.

    Also reports a different status, best epoch, number of epochs or set of keys (these must
    be equal on every kernel path). An empty list means the view agrees with the reference.
    """
    problems = []
    for field in ("status", "best_epoch"):
        if got[field] != want[field]:
            problems.append(f"{field}: {got[field]!r} != reference {want[field]!r}")
    mine, theirs = stages(got), stages(want)
    if mine.keys() != theirs.keys():
        problems.append(f"stages {sorted(mine)} != reference {sorted(theirs)}")
    for stage, numbers in theirs.items():
        if set(mine.get(stage, {})) != set(numbers):
            problems.append(f"{stage}: keys differ from the reference")
            continue
        limit = tolerance.get(stage, FLOOR)
        for key, value in numbers.items():
            dev = deviation(mine[stage][key], value)
            if dev > limit:
                problems.append(f"{stage} {key}: {mine[stage][key]!r} vs reference {value!r} "
                                f"(deviation {dev:.2e} > tolerance {limit:.2e})")
    return problems


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}
