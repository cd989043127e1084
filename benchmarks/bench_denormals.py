"""What subnormal weights cost a CPU convolution, with and without flush-to-zero.

Weight decay drives the weights of dead filters towards zero; late in a long fp32 run many
become subnormal (below 1.18e-38), and x86 CPUs compute with those on a slow path. Each of
ResNet18's 3x3 convolutions (shapes as for a 75x75 image, batch 32) is timed, one thread,
on three weight tensors: normal weights, the same with a fraction ``--subnormal`` of them
scaled into the subnormal range, and those again with subnormals flushed to zero
(``torch.set_flush_denormal``, what every trial now sets: :mod:`training.denormals`).

With ``--resume DIR/resume.pt`` the weights are a trial's own (read with
``weights_only=True``; the fraction of subnormal values of each layer is printed too).

Example::

    python benchmarks/bench_denormals.py
    python benchmarks/bench_denormals.py --resume runs/.../seed_1/resume.pt
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from training.compute_path import machine

#: ResNet18's 3x3 convolutions for a 75x75 input: (name, channels, feature-map side).
LAYERS = (("layer1", 64, 19), ("layer2", 128, 10), ("layer3", 256, 5), ("layer4", 512, 3))
TINY = torch.finfo(torch.float32).tiny


def time_conv(x: torch.Tensor, w: torch.Tensor, repeats: int) -> float:
    """Median ms of ``repeats`` convolutions (after one warm-up)."""
    F.conv2d(x, w, padding=1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        F.conv2d(x, w, padding=1)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def subnormal_share(w: torch.Tensor) -> float:
    """Fraction of ``w``'s values that are subnormal (non-zero, below ``finfo.tiny``)."""
    a = w.abs()
    return float(((a > 0) & (a < TINY)).float().mean())


def weights(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """One 3x3 weight per layer: a trial's (``--resume``) or synthetic ones."""
    if args.resume:
        state = torch.load(args.resume, map_location="cpu", weights_only=True)
        model = state["trainer"]["model"]
        return {name: model[f"backbone.net.{name}.1.conv2.weight"].float().contiguous()
                for name, _, _ in LAYERS}
    generator = torch.Generator().manual_seed(0)
    out = {}
    for name, channels, _ in LAYERS:
        w = torch.randn(channels, channels, 3, 3, generator=generator) * 0.02
        pick = torch.rand(w.shape, generator=generator) < args.subnormal
        out[name] = torch.where(pick, w * 1e-37, w)  # |w| ~ 0.02 -> ~2e-39: subnormal
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resume", default=None, help="a trial's resume.pt (its weights)")
    parser.add_argument("--subnormal", type=float, default=0.9,
                        help="synthetic weights: fraction made subnormal (default 0.9)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not 0.0 <= args.subnormal <= 1.0:
        parser.error("--subnormal must be in [0, 1]")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {machine(torch.device('cpu'))}, "
          f"1 thread, batch {args.batch}, median of {args.repeats}")
    generator, all_weights = torch.Generator().manual_seed(1), weights(args)
    for name, channels, side in LAYERS:
        w = all_weights[name]
        x = torch.randn(args.batch, channels, side, side, generator=generator)
        flushed = torch.where(w.abs() < TINY, torch.zeros_like(w), w)
        torch.set_flush_denormal(False)
        normal = time_conv(x, flushed, args.repeats)
        slow = time_conv(x, w, args.repeats)
        torch.set_flush_denormal(True)
        fast = time_conv(x, w, args.repeats)
        torch.set_flush_denormal(False)
        print(f"  {name} conv2 {channels}x{channels}x3x3 on {side}x{side}: subnormal "
              f"{100 * subnormal_share(w):5.1f} %  | no subnormals {normal:8.2f} ms  | "
              f"subnormal {slow:8.2f} ms (x{slow / normal:6.1f})  | flushed {fast:8.2f} ms "
              f"(x{fast / normal:4.2f})")


if __name__ == "__main__":
    main()
