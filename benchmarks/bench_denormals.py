"""What subnormal weights cost a CPU convolution, with and without flush-to-zero.

Weight decay drives the weights of dead filters towards zero; late in a long fp32 run many
become subnormal (below 1.18e-38), and x86 CPUs compute with those on a slow path. Each of
ResNet18's 3x3 convolutions (shapes as for a 75x75 image, batch 32) is timed, one thread,
on three weight tensors: normal weights, the same with a fraction ``--subnormal`` of them
scaled into the subnormal range, and those again with subnormals flushed to zero
(``torch.set_flush_denormal``, what every trial now sets: :mod:`training.denormals`).

With ``--resume DIR/resume.pt`` the weights are a trial's own (read with
``weights_only=True``; the fraction of subnormal values of each layer is printed too).
With ``--linear CHECKPOINT NAME`` one linear layer's weight from a trial's ``checkpoint.pt``
(or ``resume.pt``) is timed instead, forward + backward, in fp32 without and with the flush
and under bf16 autocast (how the bf16 path runs the network).

Example::

    python benchmarks/bench_denormals.py
    python benchmarks/bench_denormals.py --resume runs/.../seed_1/resume.pt
    python benchmarks/bench_denormals.py --linear runs/.../checkpoint.pt head.classifier.0.weight
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


def time_linear(x: torch.Tensor, w: torch.Tensor, repeats: int, bf16: bool = False) -> float:
    """Median ms of ``repeats`` forward + backward passes of ``x @ w.T`` (after one warm-up)."""
    w = w.clone().requires_grad_(True)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = F.linear(x, w)
        y.float().square().sum().backward()
        w.grad = None
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times[1:])[repeats // 2]


def linear_weight(path: str, name: str) -> torch.Tensor:
    """The 2-D weight ``name`` of a trial's ``checkpoint.pt`` (``model``) or ``resume.pt``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = state["trainer"]["model"] if "trainer" in state else state["model"]
    if name not in model or model[name].dim() != 2:
        linear = sorted(k for k, v in model.items() if v.dim() == 2)
        raise SystemExit(f"{path}: no linear weight {name!r}; its linear weights: {linear}")
    return model[name].float().contiguous()


def bench_linear(path: str, name: str, batch: int, repeats: int) -> None:
    """Print one linear layer's forward + backward times: fp32, fp32 flushed, bf16 autocast."""
    w = linear_weight(path, name)
    x = torch.randn(batch, w.shape[1], generator=torch.Generator().manual_seed(1))
    flushed = torch.where(w.abs() < TINY, torch.zeros_like(w), w)
    torch.set_flush_denormal(False)
    normal = time_linear(x, flushed, repeats)
    slow = time_linear(x, w, repeats)
    slow_bf16 = time_linear(x, w, repeats, bf16=True)
    normal_bf16 = time_linear(x, flushed, repeats, bf16=True)
    torch.set_flush_denormal(True)
    fast = time_linear(x, w, repeats)
    torch.set_flush_denormal(False)
    print(f"  {name} {tuple(w.shape)}: subnormal {100 * subnormal_share(w):5.1f} %  | fp32: no "
          f"subnormals {normal:7.3f} ms, subnormal {slow:7.3f} ms (x{slow / normal:5.1f}), "
          f"flushed {fast:7.3f} ms (x{fast / normal:4.2f})  | bf16 autocast: no subnormals "
          f"{normal_bf16:7.3f} ms, subnormal {slow_bf16:7.3f} ms (x{slow_bf16 / normal_bf16:4.2f})")


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
    parser.add_argument("--linear", nargs=2, default=None, metavar=("CHECKPOINT", "NAME"),
                        help="time one linear weight of a trial's checkpoint.pt instead")
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
    if args.linear:
        bench_linear(*args.linear, args.batch, args.repeats)
        return
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
