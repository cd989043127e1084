r"""How the paper's effect depends on the simulator: variants x brightness x methods.

For each *variant* (a set of ``galaxies.morphology`` constants on top of the current
defaults) and each *brightness* offset Δ, a benchmark is simulated with the sky noise of
SB_lim = 25 + Δ, which after the source-statistics normalisation is the same as making
every galaxy Δ mag brighter at SB_lim = 25 (images are linear in flux).
Then one full trial per method runs on each (``training/train.py``, the problems' default
configurations plus ``--set`` items), several at a time, and a table of source / target test
accuracy is printed. This is how the generator-v3 defaults were chosen
(``docs/HISTORY.md``, "How the v3 defaults were chosen"); on 2 CPU cores a full-size cell
takes about an hour, on a GPU a minute.

Example (the v3 choice against v2, on a GPU machine)::

    python benchmarks/sweep_simulator.py --out /tmp/sweep --variants v2 default \
        --brighter 0 1 2.5 --parallel 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BASE_SB = 25.0
VARIANTS: dict[str, dict] = {
    "default": {},
    "v2": {"MINOR_INTERACTION_PROB": 0.0, "PRIMARY_MAG_RANGE": (22.5, 25.5)},
    "no-minor": {"MINOR_INTERACTION_PROB": 0.0},
    "minor0.8": {"MINOR_INTERACTION_PROB": 0.8},
    "bright-tails": {"TAIL_FRACTION_RANGE": (0.1, 0.3)},
}


def cell_dir(root: Path, variant: str, brighter: float) -> Path:
    """Data folder of one (variant, brightness) cell."""
    return root / "data" / f"{variant}-brighter{brighter:g}"


def make_data(variant: str, brighter: list[float], root: Path, workers: int, n_mergers: int,
              n_nonmergers: int, seed: int) -> None:
    """Simulate one benchmark per brightness offset with ``variant``'s morphology constants.

    Runs in its own process (``--make-data``): the constants are patched on the module, and
    ``galaxies.simulate.simulate`` (forked workers) renders with them, so each folder is
    exactly what ``galaxies/simulate.py --limiting-sb 25+Δ`` would write for that variant.
    """
    from galaxies import morphology
    from galaxies.simulate import simulate

    for key, value in VARIANTS[variant].items():
        setattr(morphology, key, value)
    for delta in brighter:
        folder = cell_dir(root, variant, delta)
        simulate(folder, n_mergers, n_nonmergers, seed, workers, BASE_SB + delta,
                 progress=False)
        (folder / "READY").write_text(json.dumps(VARIANTS[variant]) + "\n")
        print(f"[data] {folder.name} ready", flush=True)


def summarise(record_path: Path) -> dict:
    """Source/target test accuracy (%), target AUC, best and last epoch of one record."""
    record = json.loads(record_path.read_text())
    if record["status"] != "ok":
        return {"status": record["status"], "error": str(record.get("error"))[:200]}
    metrics = record["metrics"]
    return {
        "status": "ok",
        "source": round(100 * metrics["source_test"]["accuracy"], 1),
        "target": round(100 * metrics["target_test"]["accuracy"], 1),
        "target_auc": round(metrics["target_test"]["auc"], 3),
        "best_epoch": record["best_epoch"],
        "epochs_run": len(record["history"]),
        "wall_s": round(record["wall_time_s"], 1),
        "device": record["device"],
    }


def run_sweep(args: argparse.Namespace) -> list[dict]:
    """Make the data in the background and run every trial, ``args.parallel`` at a time."""
    root = args.out
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    data_jobs = [[sys.executable, __file__, "--make-data", variant, "--out", str(root),
                  "--workers", str(args.workers), "--n-mergers", str(args.n_mergers),
                  "--n-nonmergers", str(args.n_nonmergers), "--seed", str(args.seed),
                  "--brighter", *map(str, args.brighter)] for variant in args.variants]
    trials = [(v, d, m) for v in args.variants for d in args.brighter for m in args.methods]
    data_proc = subprocess.Popen(data_jobs.pop(0), env=env)
    running, rows = [], []
    with open(root / "results.jsonl", "a") as log:
        while trials or running:
            if data_proc is not None and data_proc.poll() is not None:
                if data_proc.returncode != 0:
                    raise SystemExit("data simulation failed (see above)")
                data_proc = subprocess.Popen(data_jobs.pop(0), env=env) if data_jobs else None
            for proc, trial, out in list(running):
                if proc.poll() is None:
                    continue
                running.remove((proc, trial, out))
                result = summarise(out / "record.json") if (out / "record.json").exists() \
                    else {"status": f"exit {proc.returncode}"}
                row = {"variant": trial[0], "brighter": trial[1], "method": trial[2], **result}
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
                print(f"[trial] {row}", flush=True)
            ready = [t for t in trials if (cell_dir(root, t[0], t[1]) / "READY").exists()]
            while ready and len(running) < args.parallel:
                trial = ready.pop(0)
                trials.remove(trial)
                out = root / "runs" / f"{trial[0]}-brighter{trial[1]:g}" / trial[2]
                cmd = [sys.executable, str(REPO / "training/train.py"), "--problem",
                       f"{trial[2]}_{args.backbone}", "--data", str(cell_dir(root, *trial[:2])),
                       "--out", str(out), "--seed", str(args.seed), "--threads",
                       str(args.threads), "--quiet"]
                for item in args.set:
                    cmd += ["--set", item]
                out.mkdir(parents=True, exist_ok=True)
                with open(out / "train.log", "w") as handle:
                    proc = subprocess.Popen(cmd, cwd=REPO, stdout=handle,
                                            stderr=subprocess.STDOUT, env=env)
                running.append((proc, trial, out))
            time.sleep(1.0)
    return rows


def print_table(rows: list[dict], methods: list[str]) -> None:
    """Markdown: one line per (variant, brightness), ``source / target`` per method."""
    cells: dict[tuple, dict] = {}
    for row in rows:
        cells.setdefault((row["variant"], row["brighter"]), {})[row["method"]] = row
    print("\n| variant | brighter by | " + " | ".join(methods) + " |")
    print("| --- | --- |" + " --- |" * len(methods))
    for (variant, delta), by_method in cells.items():
        texts = []
        for method in methods:
            r = by_method.get(method, {})
            texts.append(f"{r['source']} / {r['target']}" if r.get("status") == "ok"
                         else r.get("status", "-"))
        print(f"| {variant} | {delta:g} mag | " + " | ".join(texts) + " |")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    from galaxies.simulate import DEFAULT_N_MERGERS, DEFAULT_N_NONMERGERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for data, runs, results")
    parser.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    parser.add_argument("--brighter", nargs="+", type=float, default=[0.0],
                        help="brightness offsets in mag (default 0)")
    parser.add_argument("--methods", nargs="+", default=["none", "mmd", "dann"],
                        choices=["none", "mmd", "dann"])
    parser.add_argument("--backbone", default="deepmerge", choices=["deepmerge", "resnet"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override of every trial's configuration (repeatable)")
    parser.add_argument("--parallel", type=int, default=1, help="trials at a time (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per trial")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="rendering processes")
    parser.add_argument("--n-mergers", type=int, default=DEFAULT_N_MERGERS)
    parser.add_argument("--n-nonmergers", type=int, default=DEFAULT_N_NONMERGERS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--make-data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_data:
        make_data(args.make_data, args.brighter, args.out, args.workers, args.n_mergers,
                  args.n_nonmergers, args.seed)
        return 0
    if any(d < -10 or d > 10 for d in args.brighter):
        parser.error("--brighter takes offsets in magnitudes between -10 and 10")
    if args.parallel < 1 or args.threads < 1 or args.workers < 1:
        parser.error("--parallel, --threads and --workers must be at least 1")
    rows = run_sweep(args)
    print_table(rows, args.methods)
    return 0


if __name__ == "__main__":
    sys.exit(main())
