"""The numerical path of a trial (precision, memory layout, compilation), resolved per device.

``precision`` is ``auto`` (the default), ``fp32`` or ``bf16``. An explicit ``fp32`` or
``bf16`` runs as asked, with the ``channels_last`` and ``compile`` knobs as given. ``auto`` is
resolved once, at the start of a trial, from what the device offers:

- a CPU whose bf16 units pay (AMX; or AVX-512 BF16 on an AMD CPU), as torch reports them,
  with torch's and oneDNN's AVX-512 kernels in use, or a CUDA device that supports bf16:
  **bf16 autocast of the network + channels_last** (losses, MMD distances and the optimiser
  stay in fp32). Measured ×2.25 (DeepMerge) and ×1.74 (ResNet18) over fp32 on an Intel Xeon
  with AMX (issue 22) and ×1.94-2.63 on an AMD EPYC Zen 4 with AVX-512 BF16
  (``benchmarks/results/speed.md``);
- an Intel CPU with AVX-512 BF16 but no AMX: **fp32** as below. oneDNN runs its
  ``avx512_core_bf16`` convolutions there, and they were measured *slower* than fp32
  (ResNet18 ×0.76-0.77 of fp32's step rate) or no faster than fp32 + channels_last
  (DeepMerge, ``benchmarks/results/speed.md``);
- a CPU without bf16 units: **fp32**, with channels_last where the backbone's spec says NHWC
  pays in fp32 (``BackboneSpec.fp32_channels_last``: DeepMerge ×1.13-1.24 on an AVX2 EPYC,
  ResNet18 ×0.96-1.03). bf16 is 4-20× *slower* there (oneDNN falls back to slow convolutions);
- anything else (MPS): fp32.

``auto`` never turns on ``compile`` (19-71 s of warm-up per trial process and a C++ toolchain;
ask for it with ``compile=1``); ``channels_last=1`` or ``compile=1`` given beside ``auto`` are
kept. The trial's record holds what was asked and what ran (:meth:`ComputePath.to_dict`).
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = ["ComputePath", "bf16_units", "cpu_vendor", "machine", "resolve_compute_path"]

#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) under which it has no bf16 instructions.
_NO_BF16_ISA = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class ComputePath:
    """What a trial's network runs as.

    Attributes:
        asked: the config's ``precision`` (``auto``, ``fp32`` or ``bf16``).
        precision: ``fp32`` or ``bf16`` (autocast of the network).
        channels_last: NHWC layout for the network and its batches.
        compile: ``torch.compile`` of the training forward/backward.
        reason: why (the device's bf16 support for ``auto``; ``"asked"`` otherwise).
        flush_denormal: subnormal floats flushed to zero on every CPU thread of the trial
            (:mod:`training.denormals`; set by the trainer, not part of the resume fingerprint).
    """

    asked: str
    precision: str
    channels_last: bool
    compile: bool
    reason: str
    flush_denormal: bool = False

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (the record's ``compute_path``)."""
        return asdict(self)


def _cpuinfo() -> tuple[str, str, set[str]]:
    """``(vendor_id, model name, flags)`` of the first CPU in ``/proc/cpuinfo``."""
    vendor, model, flags = "", "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "vendor_id" and not vendor:
                vendor = value.strip()
            elif key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return vendor, model, flags


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ... (``/proc/cpuinfo``; ``""`` where unknown)."""
    return _cpuinfo()[0]


def bf16_units(device: torch.device) -> tuple[bool, str]:
    """``(pays, why)``: does ``device`` have bf16 units whose kernels beat fp32 (module doc)?"""
    if device.type == "cuda":
        ok = bool(torch.cuda.is_bf16_supported())
        return ok, f"CUDA {'supports' if ok else 'does not support'} bf16"
    if device.type != "cpu":
        return False, f"{device.type}: fp32"
    units = [name for name, probe in (("AMX", "_is_amx_tile_supported"),
                                      ("AVX-512 BF16", "_is_avx512_bf16_supported"))
             if getattr(torch.cpu, probe, lambda: False)()]
    capability = torch.backends.cpu.get_cpu_capability()
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if not units:
        return False, f"CPU without AVX-512 BF16 or AMX (torch capability {capability})"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False, f"CPU has {' and '.join(units)} but oneDNN reports no bf16 support"
    if capability != "AVX512" or onednn_cap in _NO_BF16_ISA:
        return False, (f"CPU has {' and '.join(units)} but the kernels are capped "
                       f"(torch capability {capability}, ONEDNN_MAX_CPU_ISA={onednn_cap or '-'})")
    if "AMX" not in units and cpu_vendor() == "GenuineIntel":
        return False, ("Intel CPU with AVX-512 BF16 but no AMX: its bf16 convolutions were "
                       "measured slower than fp32 (benchmarks/results/speed.md)")
    return True, f"CPU with {' and '.join(units)} (torch capability {capability})"


def machine(device: torch.device) -> str:
    """The hardware a trial ran on, for its record.

    The CUDA device's name, or the CPU model with its bf16 flags and torch's kernel capability.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    _, model, flags = _cpuinfo()
    model = model or platform.processor() or "unknown CPU"
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (f"{model} ({', '.join(bf16) or 'no AVX-512 BF16/AMX'}; torch "
            f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} CPUs)")


def resolve_compute_path(precision: str, channels_last: int | bool, compile_: int | bool,
                         device: torch.device, fp32_channels_last: bool) -> ComputePath:
    """The path a trial runs (see the module docstring).

    Args:
        precision: the config's ``precision``.
        channels_last: the config's ``channels_last`` (0/1).
        compile_: the config's ``compile`` (0/1).
        device: the trial's device.
        fp32_channels_last: the backbone spec's ``fp32_channels_last``.
    """
    if precision != "auto":
        return ComputePath(precision, precision, bool(channels_last), bool(compile_), "asked")
    has_bf16, why = bf16_units(device)
    if has_bf16:
        return ComputePath("auto", "bf16", True, bool(compile_), why)
    layout = bool(channels_last) or (device.type == "cpu" and fp32_channels_last)
    return ComputePath("auto", "fp32", layout, bool(compile_), why)
