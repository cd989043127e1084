r"""Which size statistic the shift meter reads the seeing from (issue 26, development data).

Usage::

    python benchmarks/seeing_statistic.py --out benchmarks/records/seeing_statistic_dev.json

Simulates development data seed 2 (never a held-out seed: this chooses a statistic) at
SB_lim 25 with the target PSF × 1, × 1.25 and × 1.5 (``--n`` mergers and ``--n`` non-mergers
each, the same galaxies in the three pairs), and reads the seeing of each target set, of its
mergers alone and of its non-mergers alone with ``apply/shift.py``'s reading against the
committed atlas cells (``reports/atlas/cells.json``), once from each statistic of
:mod:`galaxies.shift_stats`: the median adaptive (HSM) size and the median core size. A set
of only mergers or only non-mergers (a catalogue's mix is not the simulation's) should be read
in the same cell as the mixed one. Per statistic it also records the classes' median sizes
and the gap between them in PSF steps of × 0.25.

Prints one line per set; exit status 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEV_SEED = 2
PSF_SCALES = (1.0, 1.25, 1.5)
STATISTICS = {"adaptive": ("size", "size_err", "size_n"), "core": ("core", "core_err", "core_n")}


def simulate(out: Path, psf: float, n: int) -> Path:
    """One development pair at SB_lim 25 and target PSF × ``psf``."""
    subprocess.run([sys.executable, "galaxies/simulate.py", "--out", str(out), "--n-mergers",
                    str(n), "--n-nonmergers", str(n), "--seed", str(DEV_SEED), "--limiting-sb",
                    "25", "--target-psf-scale", str(psf), "--workers", "1", "--quiet"],
                   cwd=REPO, check=True, capture_output=True)
    return out


def read_as(summary: dict[str, Any], statistic: str, atlas: dict[str, Any]) -> dict[str, Any]:
    """The meter's reading with the seeing taken from ``statistic``."""
    from apply import shift

    value, err, count = STATISTICS[statistic]
    stat = shift.SEEING_STAT  # the key the meter reads the seeing from, filled with `statistic`
    summary = {**summary, stat: summary[value], f"{stat}_err": summary[err],
               f"{stat}_n": summary[count]}
    cells = {name: {**cell, "target": {**cell["target"], stat: cell["target"][value]}}
             for name, cell in atlas["cells"].items()}
    # The statistical error alone: the class-mix systematic is what this benchmark measures.
    place = shift.reading(summary, {**atlas, "cells": cells}, class_mix=0.0)
    return {"psf_scale": place["psf_scale"], "psf_scale_err": place["psf_scale_err"],
            "cell": place["cell"], "neighbour": place["neighbour"], "outside": place["outside"],
            "reasons": place["reasons"]}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    import h5py

    from apply import shift
    from galaxies.shift_stats import summarize

    parser = argparse.ArgumentParser(prog="benchmarks/seeing_statistic.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="mergers and non-mergers per set")
    parser.add_argument("--out", type=Path, help="JSON record")
    args = parser.parse_args(argv)
    atlas = shift.load_atlas(shift.DEFAULT_ATLAS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for psf in PSF_SCALES:
            pair = simulate(Path(tmp) / f"psf{psf:g}", psf, args.n)
            with h5py.File(pair / "target.h5", "r") as handle:
                images, labels = handle["images"][:], handle["labels"][:]
            sets = {"mixed": images, "mergers": images[labels == 1],
                    "non-mergers": images[labels == 0]}
            summaries = {name: summarize(x) for name, x in sets.items()}
            for name, summary in summaries.items():
                row = {"psf_scale": psf, "set": name, "n": summary["n"]}
                for statistic, (value, _, _) in STATISTICS.items():
                    row[statistic] = {"median_size": summary[value],
                                      **read_as(summary, statistic, atlas)}
                rows.append(row)
                print(f"PSF x{psf:g} {name:11s} " + "  ".join(
                    f"{s}: x{row[s]['psf_scale']:.2f} ({row[s]['cell']}"
                    f"{', outside' if row[s]['outside'] else ''})" for s in STATISTICS),
                    flush=True)
    gaps = {}
    for statistic in STATISTICS:
        per_psf = {r["psf_scale"]: {} for r in rows}
        for r in rows:
            per_psf[r["psf_scale"]][r["set"]] = np.asarray(r[statistic]["median_size"])
        step = (per_psf[1.25]["mixed"] - per_psf[1.0]["mixed"])
        gap = per_psf[1.0]["mergers"] - per_psf[1.0]["non-mergers"]
        gaps[statistic] = {"class_gap_px": gap.tolist(), "psf_step_px": step.tolist(),
                           "class_gap_in_psf_steps": (gap / step).tolist()}
        print(f"{statistic}: mergers - non-mergers at PSF x1 = "
              f"{', '.join(f'{v:.2f}' for v in gap / step)} PSF steps (per filter)")
    if args.out:
        import torch

        from training.compute_path import machine
        from training.record import write_json

        write_json(args.out, {"data_seed": DEV_SEED, "limiting_sb": 25.0, "n_per_class": args.n,
                              "atlas": "reports/atlas/cells.json", "rows": rows,
                              "gaps": gaps, "machine": machine(torch.device("cpu")),
                              "command": "python benchmarks/seeing_statistic.py --out "
                              f"{args.out}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
