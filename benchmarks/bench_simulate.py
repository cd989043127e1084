"""Time the full-size benchmark simulation: wall time, peak RSS (self + children), file sizes.

Usage::

    python benchmarks/bench_simulate.py [--out DIR] [--workers N] [simulate options...]

Extra options are passed to ``galaxies/simulate.py`` (defaults: the full-size benchmark).
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

from galaxies.schema import domain_paths
from galaxies.simulate import main as simulate_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    args, rest = parser.parse_known_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    sim_args = ["--out", str(out), "--quiet", *rest]
    start = time.perf_counter()
    simulate_main(sim_args)
    wall = time.perf_counter() - start
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"command: python galaxies/simulate.py {shlex.join(sim_args)}")
    print(f"wall time: {wall:.1f} s")
    print(f"peak RSS: main {self_kb / 1024:.0f} MiB, largest child {child_kb / 1024:.0f} MiB")
    for domain, path in domain_paths(out).items():
        print(f"{domain}: {path} {path.stat().st_size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
