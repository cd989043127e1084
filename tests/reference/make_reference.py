"""Write ``records.json``: tiny-data trial records that later code must reproduce exactly.

Run from the repository root (it was run at commit d60b45a, before the spec registries)::

    python tests/reference/make_reference.py

Each of the six problems trains 3 epochs of 3 batches of 8 on ``tests/conftest.py``'s tiny
pair with one torch thread; the file keeps what "same numbers" means: metrics, diagnostics,
the per-epoch losses and learning rates, and the best epoch.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TINY = ["epochs=3", "batch_size=8", "max_batches_per_epoch=3", "patience=3"]
#: The reference's numerical path (made before ``precision=auto`` existed).
FP32_EAGER = ["precision=fp32", "channels_last=0", "compile=0"]
PROBLEMS = ("none_deepmerge", "mmd_deepmerge", "dann_deepmerge", "none_resnet", "mmd_resnet",
            "dann_resnet")
HISTORY_KEYS = ("epoch", "train_loss", "train_cl_loss", "train_tl_loss", "source_val_loss",
                "source_val_accuracy", "lr", "train_steps")


def reference_view(record: dict) -> dict:
    """The part of a record that must not change for the same seed."""
    return {
        "problem": record["problem"], "status": record["status"], "config": record["config"],
        "metrics": record["metrics"], "diagnostics": record["diagnostics"],
        "best_epoch": record["best_epoch"],
        "history": [{k: row[k] for k in HISTORY_KEYS} for row in record["history"]],
    }


def reference_views(problems: tuple[str, ...] = PROBLEMS) -> dict[str, dict]:
    """Train the tiny trial of each problem (one torch thread); its :func:`reference_view`."""
    sys.path.insert(0, str(HERE.parent))
    from conftest import make_tiny_pair

    from galaxies.schema import domain_paths, write_domain
    from training.loop import run_trial
    from training.naming import problem_config

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            paths = domain_paths(tmp)
            for domain, data in make_tiny_pair().items():
                write_domain(paths[domain], data)
            for problem in problems:
                record = run_trial(problem_config(problem, TINY + FP32_EAGER), tmp,
                                   Path(tmp) / problem, problem=problem, progress=False)
                out[problem] = reference_view(record)
    finally:
        torch.set_num_threads(before)
    return out


def main() -> int:
    out = reference_views()
    (HERE / "records.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
