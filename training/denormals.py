"""Flush subnormal floats to zero on the CPU (FTZ + DAZ), and check that it is in effect.

Subnormal (denormal) fp32 values, below 1.18e-38, take a slow microcode path on x86 CPUs.
Weights that weight decay drives towards zero (dead filters late in a one-cycle schedule)
become subnormal in their thousands: in a paper-size ResNet18 no-DA run in fp32 on an Intel
Xeon most of ``layer3``'s and ``layer4``'s weights were subnormal by epoch 14, and epochs went
from 168-200 s to 562-1,135 s (``layer3.1.conv2`` with those weights: x201 the time of normal
weights, x1.00 flushed; ``benchmarks/records/denormals_intel_noamx.txt``, ``speed.md``).
Values that small change no sum they enter at fp32's
precision, so flushing them to zero changes the network's outputs by nothing measurable.

``torch.set_flush_denormal`` sets the flags of the *calling* thread only; intra-op (OpenMP)
threads inherit them when they are created after it, so :func:`flush_denormals` must run
before the process's first parallel torch operation (``torch.set_num_threads`` included) to
cover every thread. :func:`flushes_everywhere` checks it on the intra-op threads themselves.
"""

from __future__ import annotations

import torch

__all__ = ["flush_denormals", "flushes_everywhere"]

#: Elements per intra-op thread in the probe (torch splits element-wise work into chunks of
#: at least 32,768 elements, ``at::internal::GRAIN_SIZE``).
_PROBE_PER_THREAD = 1 << 16


def flushes_everywhere() -> bool:
    """Whether subnormal fp32 inputs read as zero on every intra-op thread of this process.

    A tensor of the smallest subnormal (bit pattern 1) doubled in parallel: with DAZ on the
    thread that computes a chunk, the chunk comes out zero; without, ``2 × 1.4e-45``.
    """
    n = _PROBE_PER_THREAD * max(1, torch.get_num_threads())
    probe = torch.ones(n, dtype=torch.int32).view(torch.float32)
    return bool(torch.count_nonzero(probe * 2.0) == 0)


def flush_denormals() -> bool:
    """Turn on flush-to-zero for this process's CPU threads; ``True`` when it is in effect on all.

    ``False`` where the CPU does not support it, or where the intra-op thread pool already
    existed (then only the calling thread flushes: call this earlier, before
    ``torch.set_num_threads``).
    """
    return bool(torch.set_flush_denormal(True)) and flushes_everywhere()
