"""Measure how far this machine's kernel path drifts from the committed reference.

Trains the six tiny reference trials (``make_reference.py``) here and writes, into
``drift.json`` under this kernel path's name, the largest relative deviation of each stage
(:func:`tolerance.stage_drift`). ``tests/test_reference.py`` derives its tolerances from every
path in the file. Run from the repository root, natively and under the AVX2 emulation of an
AVX-512 CPU::

    python tests/reference/measure_drift.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python tests/reference/measure_drift.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from reference.make_reference import reference_views  # noqa: E402
from reference.tolerance import stage_drift  # noqa: E402

from training.compute_path import machine  # noqa: E402


def cpu_model() -> str:
    """``model name`` of ``/proc/cpuinfo`` (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def kernel_path() -> str:
    """This machine's kernel path: CPU model, torch's CPU capability, oneDNN's ISA cap."""
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "default")
    return (f"{cpu_model()} / torch {torch.backends.cpu.get_cpu_capability()} / "
            f"oneDNN max ISA {onednn}")


def main() -> int:
    reference = json.loads((HERE / "records.json").read_text())
    views = reference_views(tuple(sorted(reference)))
    path = HERE / "drift.json"
    drift = json.loads(path.read_text()) if path.exists() else {"paths": {}}
    name = kernel_path()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
                   if k in os.environ)
    drift["paths"][name] = {
        "machine": f"{machine(torch.device('cpu'))}, torch {torch.__version__}",
        "command": f"{env + ' ' if env else ''}python tests/reference/measure_drift.py",
        "date": time.strftime("%Y-%m-%d"),
        "drift": {problem: stage_drift(views[problem], reference[problem])
                  for problem in sorted(reference)},
    }
    path.write_text(json.dumps(drift, indent=1, sort_keys=True) + "\n")
    for problem, stages in drift["paths"][name]["drift"].items():
        print(f"{problem:15s} " + "  ".join(f"{k} {v:.1e}" for k, v in stages.items()))
    print(f"written: {path} [{name}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
