"""Search overheads: worker utilisation of a real search, and CBO's ask/tell cost.

1. Utilisation: a real ``mmd_deepmerge`` CBO search (``search/run.py`` code path, process
   evaluator) on a small simulated data set, trials of realistic length (>= ~20 s).
   ``utilisation = sum of trial durations / (workers x search wall time)``, where a trial's
   duration is ``run_trial``'s own wall time (``m:wall_time_s``) and the search wall time
   runs from the first submission to the last gather (DeepHyper's timestamps). Also printed:
   the same against the driver's whole wall time (start-up included).
2. Ask/tell: seconds per ``ask(1)`` + ``tell`` of DeepHyper's CBO on the ``mmd_deepmerge``
   space (synthetic objective, surrogate fitted), for each acquisition optimiser.

Example (2 CPU cores)::

    python benchmarks/bench_search.py --workers 2 --max-evals 8 --epochs 24
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def small_data(data_dir: Path, n_per_class: int) -> Path:
    """A small simulated source/target pair (cached in ``data_dir``)."""
    from galaxies.schema import domain_paths
    from galaxies.simulate import simulate

    if not all(Path(p).is_file() for p in domain_paths(data_dir).values()):
        simulate(data_dir, n_mergers=n_per_class, n_nonmergers=n_per_class, seed=3, workers=2,
                 progress=False)
    return data_dir


def utilisation(data_dir: Path, workers: int, max_evals: int, epochs: int) -> dict:
    """Run a real search and measure how busy its workers were."""
    from search.run import main

    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "search"
        start = time.monotonic()
        main(["--problem", "mmd_deepmerge", "--data", str(data_dir), "--log-dir", str(log_dir),
              "--max-evals", str(max_evals), "--workers", str(workers), "--evaluator", "process",
              "--set", f"epochs={epochs}", "--set", "max_batches_per_epoch=0",
              "--set", f"patience={epochs}", "--quiet"])
        driver_wall = time.monotonic() - start
        frame = pd.read_csv(log_dir / "results.csv")
    busy = frame["m:wall_time_s"].astype(float)
    search_wall = frame["m:timestamp_gather"].max() - frame["m:timestamp_submit"].min()
    return {
        "trials": len(frame),
        "failed": int(frame["objective"].astype(str).str.startswith("F").sum()),
        "trial_s_mean": busy.mean(),
        "trial_s_min": busy.min(),
        "search_wall_s": search_wall,
        "driver_wall_s": driver_wall,
        "utilisation": busy.sum() / (workers * search_wall),
        "utilisation_incl_startup": busy.sum() / (workers * driver_wall),
    }


def ask_tell(acq_optimizer: str, iterations: int, n_initial: int = 10) -> dict:
    """Seconds per ask(1)+tell of CBO on the mmd_deepmerge space after the initial design."""
    from deephyper.hpo import CBO

    from problems import get_problem

    space = get_problem("mmd_deepmerge").subspace()
    with tempfile.TemporaryDirectory() as tmp:
        search = CBO(space, log_dir=tmp, random_state=0, acq_optimizer=acq_optimizer,
                     n_initial_points=n_initial, checkpoint_history_to_csv=False)
        rng = np.random.default_rng(0)
        times = []
        for i in range(n_initial + iterations):
            tick = time.perf_counter()
            (config,) = search.ask(1)
            objective = -abs(np.log10(config["lr"]) + 3) + 0.1 * rng.normal()
            search.tell([(config, float(objective))])
            if i >= n_initial:
                times.append(time.perf_counter() - tick)
    return {"acq_optimizer": acq_optimizer, "iterations": iterations,
            "ask_tell_s_mean": float(np.mean(times)),
            "ask_tell_s_p90": float(np.quantile(times, 0.9))}


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them as tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "bench_search_data",
                        help="small data set folder (simulated there on first use)")
    parser.add_argument("--n-per-class", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-evals", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=24, help="epochs per trial (trial length)")
    parser.add_argument("--iterations", type=int, default=30, help="ask/tell iterations timed")
    parser.add_argument("--acq-optimizers", nargs="+", default=["sampling", "mixedga"])
    parser.add_argument("--skip-utilisation", action="store_true")
    args = parser.parse_args(argv)

    with pd.option_context("display.width", 200, "display.max_columns", None):
        rows = [ask_tell(name, args.iterations) for name in args.acq_optimizers]
        print("CBO ask/tell overhead per trial\n" + pd.DataFrame(rows).to_string(index=False))
        if not args.skip_utilisation:
            data_dir = small_data(args.data, args.n_per_class)
            result = utilisation(data_dir, args.workers, args.max_evals, args.epochs)
            print(f"\nworker utilisation ({args.workers} process workers)\n"
                  + pd.Series(result).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
