"""Flush subnormal floats to zero on the CPU (FTZ + DAZ), and check that it is in effect.

Subnormal (denormal) fp32 values, below 1.18e-38, take a slow microcode path on x86 CPUs.
Weights that weight decay drives towards zero (dead filters of a long one-cycle schedule)
become subnormal in their thousands: in a paper-size ResNet18 no-DA run in fp32 on an Intel
Xeon, 96.5 % of ``layer3.1.conv2``'s and 99.5 % of ``layer4.1.conv2``'s weights were
subnormal by epoch 14 (training seed 2's checkpoint), and the epochs of training seeds 1 and
2 went from 168-200 s to 562-1,135 s (``layer3.1.conv2`` with those weights: x201 the time
of normal weights, x1.00 flushed; ``benchmarks/records/denormals_intel_noamx.txt``,
``speed.md``). With the flush, every operation whose inputs or result are subnormal uses 0
instead (1e-39 x 1e3 gives 0, not 1e-36; 1e-20 x 1e-20 gives 0, not 1e-40); an operation
on normal values with a normal result is computed as before.

``torch.set_flush_denormal`` sets the flags of the *calling* thread only; intra-op (OpenMP)
threads inherit them when they are created after it, so :func:`flush_denormals` must run
before the process's first parallel torch operation (which creates the thread pool;
``torch.set_num_threads`` alone does not) to cover every thread: every command that trains
or applies a network calls it first thing in ``main``, except the ones that fork trial
workers (the search driver, ``search/seeds.py``): the check below starts torch's OpenMP
threads, and a child forked after that hangs in its first parallel region, so there each
trial flushes in its worker (``search.runner``). :func:`flushes_everywhere` checks it on
the intra-op threads themselves; the trainer records the result
(``compute_path.flush_denormal``) and warns (:class:`DenormalWarning`) on a CPU where only the
calling thread flushes. The flags are process state: numpy code on the same thread flushes
too, which is why only commands set them, not an import.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["DenormalWarning", "flush_denormals", "flushes_everywhere"]


class DenormalWarning(UserWarning):
    """Subnormal floats are flushed to zero on the calling thread only (called too late)."""

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


def flush_denormals(warn: bool = False) -> bool:
    """Turn on flush-to-zero for this process's CPU threads; ``True`` when it is in effect on all.

    ``False`` where the CPU does not support it, or where the intra-op thread pool already
    existed (then only the calling thread flushes: call this earlier, before the process's
    first parallel torch operation). With ``warn``, the latter case emits a
    :class:`DenormalWarning` naming the fix.
    """
    supported = bool(torch.set_flush_denormal(True))
    everywhere = supported and flushes_everywhere()
    if warn and supported and not everywhere:
        warnings.warn(
            "subnormal floats are flushed to zero on this thread only: torch's intra-op threads "
            "existed before training.denormals.flush_denormals() was called; call it first "
            "thing in the process (subnormal weights made single layers x100-300 slower, and "
            "epochs up to x6.6)",
            DenormalWarning, stacklevel=2)
    return everywhere
