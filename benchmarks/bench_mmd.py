"""Cost of the MMD transfer loss in a DeepMerge DA step, and backbone throughput.

Run: ``.venv/bin/python benchmarks/bench_mmd.py [--steps 20] [--device cuda]``

A DA step = forward of 128 source + 128 target images, cross-entropy on the source,
(+ λ·MMD on the features), backward, Adam step. Steps with and without the transfer loss are
interleaved so that load from other processes affects both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from models import create_classifier
from training.config import default_config
from training.registry import create_transfer_loss

DEVICE = torch.device("cpu")


def make_step(backbone: str, method: str, batch: int, target: bool, **cfg_kw) -> Callable[[], None]:
    torch.manual_seed(0)
    cfg = default_config(method, backbone).replace(**cfg_kw)
    model = create_classifier(cfg).to(DEVICE)
    tl = create_transfer_loss(cfg, model.feature_dim).to(DEVICE)
    groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
    groups += tl.parameter_groups(cfg.lr)
    opt = torch.optim.Adam(groups)
    xs = torch.randn(batch, 3, 75, 75, device=DEVICE)
    ys = torch.randint(0, 2, (batch,), device=DEVICE)
    xt = torch.randn(batch, 3, 75, 75, device=DEVICE) + 0.1

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        x = torch.cat([xs, xt]) if target else xs
        feats, logits = model.forward_with_features(x)
        loss = F.cross_entropy(logits[:batch], ys)
        if method != "none":
            loss = loss + cfg.lambda_tl * tl(feats[:batch], feats[batch:])
        loss.backward()
        opt.step()

    return step


def timed(fn: Callable[[], None]) -> float:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


WARMUP = 3


def interleaved(
    fns: dict[str, Callable[[], None]], steps: int, warmup: int | None = None
) -> dict[str, tuple[float, float]]:
    """Per name: (median, min) of ``steps`` timings in seconds, the names taking turns."""
    warmup = WARMUP if warmup is None else warmup
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def mmd_alone(n: int, dim: int, steps: int, **cfg_kw) -> tuple[float, float]:
    cfg = default_config("mmd").replace(**cfg_kw)
    tl = create_transfer_loss(cfg, dim).to(DEVICE)
    fs = torch.randn(n, dim, device=DEVICE, requires_grad=True)
    ft = torch.randn(n, dim, device=DEVICE) + 0.1
    return interleaved({"mmd": lambda: tl(fs, ft).backward()}, steps)["mmd"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128, help="source (= target) batch size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--backbones", nargs="*", default=["deepmerge", "resnet18"],
                        help="backbones timed alone at the end (none: skip)")
    args = parser.parse_args()
    from training.denormals import flush_denormals

    flush_denormals()  # before torch's thread pool exists: every thread flushes
    global WARMUP
    WARMUP = args.warmup
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {name}, threads {torch.get_num_threads()}, "
          f"{args.steps} steps")
    print("times: median (min) — the min is less sensitive to other processes' load")

    da = interleaved(
        {
            "none": make_step("deepmerge", "none", args.batch, target=True),
            "mmd family": make_step("deepmerge", "mmd", args.batch, target=True),
            "mmd authors": make_step(
                "deepmerge", "mmd", args.batch, target=True, mmd_bandwidths="authors"
            ),
            "dann": make_step("deepmerge", "dann", args.batch, target=True),
        },
        args.steps,
    )
    (base_med, base_min) = da["none"]
    print(f"\nDeepMerge DA step (forward+backward+Adam), {args.batch} source + {args.batch} "
          "target:")
    for name, (med, lo) in da.items():
        line = (
            f"  {name:12s} {1000 * med:7.1f} ({1000 * lo:6.1f}) ms  "
            f"{args.batch / med:5.0f} source img/s"
        )
        if name != "none":
            over, over_min = 100 * (med / base_med - 1), 100 * (lo / base_min - 1)
            line += f"  overhead {over:+.1f}% (min: {over_min:+.1f}%)"
        print(line)
    for mode in ("family", "authors"):
        med, lo = mmd_alone(args.batch, 2592, args.steps, mmd_bandwidths=mode)
        print(
            f"  MMD alone ({mode}, {args.batch}+{args.batch} × 2592, fwd+bwd): "
            f"{1000 * med:.1f} ({1000 * lo:.1f}) ms"
        )

    print("\nBackbone forward+backward (+Adam step), source only:")
    for name, batch in (("deepmerge", args.batch), ("resnet18", args.batch // 2)):
        if name not in args.backbones:
            continue
        med, lo = interleaved({name: make_step(name, "none", batch, target=False)}, args.steps)[
            name
        ]
        print(
            f"  {name:9s} batch {batch:3d}: {1000 * med:7.1f} ({1000 * lo:6.1f}) ms"
            f"  {batch / med:5.0f} img/s"
        )


if __name__ == "__main__":
    main()
