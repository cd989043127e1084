r"""Which stopping rule is fair? Full one-cycle schedules traced epoch by epoch (issue 25).

Ciprijanovic et al. (2020) train with Adam + one-cycle and early stopping. With patience 5 on
the source validation loss, a 30-epoch run can stop in the schedule's high-learning-rate
phase (peak at epoch ``pct_start * epochs`` = 9) and return weights that never annealed, so a
baseline stopped that way makes every gain against it unreliable. This study runs each
problem's **default configuration over its whole schedule** (``stopping=best``,
``patience = epochs``: nothing stops early) on a *development* data seed and, after every
epoch, keeps the per-image correctness of both **validation** splits (the target labels are
read for reporting only: nothing in training reads them). Training is deterministic, so the
first ``k`` epochs of the full run *are* the run that a rule stopping after epoch ``k`` would
have made: every rule below is evaluated exactly, image by image, from one run per seed.

Rules (each picks the epoch whose weights the trial returns):

- ``patience``: today's rule, the problem's default ``patience`` counted on the source
  validation loss from the first epoch; the best epoch up to the stop.
- ``full_best_loss``: the whole schedule; the epoch with the lowest source validation loss.
- ``best_after_peak``: the whole schedule; the lowest source validation loss among the
  epochs after the learning-rate peak.
- ``last``: the whole schedule; the last epoch's weights (the annealed ones).

Decision rule, written down before the runs: among the rules that never stop before the
learning rate annealed (all but ``patience``), keep ``full_best_loss`` (the restored-best
weights the trainer already returns, the truncation alone removed) unless another rule's
target validation accuracy, averaged over problems and seeds, beats it by >= 1 point with a
paired 95 % interval above 0. Test splits are never read; held-out data seeds are never used.

Usage::

    python benchmarks/stopping_study.py run --problem none_deepmerge --seed 1 \
        --data data/benchmark-v4-seed2-dev --runs runs/stopping --records reports/stopping/records
    python benchmarks/stopping_study.py table --records reports/stopping/records \
        --out reports/stopping

``run`` trains (resumable: ``training.loop.run_trial``'s ``resume.pt``, the trace included)
and writes ``--records/<problem>/seed_<S>.json`` (JSON only: configuration, compute path,
machine, data, the per-epoch trace); a finished record is not rerun. ``table`` writes
``stopping.json`` and ``stopping.md``. ``bash benchmarks/stopping_study.sh`` runs it all.
Exit status: 0 done; 1 a trial failed; 2 bad arguments or missing records.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

RULES = ("patience", "full_best_loss", "best_after_peak", "last")
#: Each rule as the trainer's ``stopping`` setting (``training.loop.fit``).
CONFIG_VALUE = {"patience": "patience", "full_best_loss": "best",
                "best_after_peak": "best_after_peak", "last": "last"}
FULL_SCHEDULE_RULES = RULES[1:]
DOMAINS = ("source", "target")
#: A run "annealed" once its learning rate fell to this fraction of the peak.
ANNEALED_FRACTION = 0.05
#: Decision threshold (points of target validation accuracy), see the module docstring.
MARGIN = 1.0


def _pack(correct: np.ndarray) -> str:
    return np.packbits(correct.astype(np.uint8)).tobytes().hex()


def unpack(hex_bits: str, n: int) -> np.ndarray:
    """Per-image correctness (bool [n]) from its packed hex string."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), np.uint8))[:n].astype(bool)


class Tracer:
    """Epoch callback: keeps each epoch's validation correctness, never stops the run.

    Its ``state_dict`` travels in ``resume.pt``, so a resumed trial keeps its earlier epochs.
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.galaxy_ids: dict[str, list[int]] = {}

    def __call__(self, epoch: int, interim) -> bool:
        """Score the validation splits image by image; never stop."""
        scored = interim([], predictions=True)
        pred, row = scored["predictions"], {"epoch": epoch}
        for domain in DOMAINS:
            p, y = pred[f"{domain}_val_p_merger"], pred[f"{domain}_val_label"].astype(bool)
            self.galaxy_ids[domain] = [int(g) for g in pred[f"{domain}_val_galaxy_id"]]
            row[f"{domain}_val_accuracy"] = float(((p >= 0.5) == y).mean())
            row[f"{domain}_val_correct"] = _pack((p >= 0.5) == y)
        self.epochs = [e for e in self.epochs if e["epoch"] < epoch] + [row]
        return False

    def state_dict(self) -> dict[str, Any]:
        """The epochs traced so far (saved in ``resume.pt``)."""
        return {"epochs": self.epochs, "galaxy_ids": self.galaxy_ids}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a resumed trial's traced epochs."""
        self.epochs, self.galaxy_ids = list(state["epochs"]), dict(state["galaxy_ids"])


def run(problem: str, seed: int, data: str, runs: Path, records: Path, epochs: int,
        extra: tuple[str, ...] = ()) -> int:
    """Train ``problem`` over its whole schedule and write its study record.

    ``extra``: further ``KEY=VALUE`` settings of both the run and its default (tests).
    """
    from training.loop import run_trial
    from training.naming import problem_config

    out = records / problem / f"seed_{seed}.json"
    if out.exists():
        print(f"skip {problem} seed {seed}: {out} exists")
        return 0
    default = problem_config(problem, [f"seed={seed}", f"epochs={epochs}", *extra])
    config = problem_config(problem, [f"seed={seed}", f"epochs={epochs}", *extra,
                                      "stopping=best", f"patience={epochs}"])
    tracer = Tracer()
    record = run_trial(config, data, runs / problem / f"seed_{seed}", problem=problem,
                       progress=False, on_epoch=tracer)
    if record["status"] != "ok":
        print(f"error: {problem} seed {seed} failed: {record['error']}", file=sys.stderr)
        return 1
    history = {row["epoch"]: row for row in record["history"]}
    trace = [{**{k: history[e["epoch"]][k] for k in ("lr", "source_val_loss")}, **e}
             for e in tracer.epochs]
    study = {key: record[key] for key in ("problem", "method", "backbone", "config", "seed",
                                          "compute_path", "machine", "host", "versions")}
    attrs = record["data"]["source_attrs"]
    study.update(default_patience=default.patience, data={
        "dir": data, **{k: attrs.get(k) for k in (  # as given: a linked data/ resolves outside
            "seed", "pair_id", "generator_version", "n_mergers", "n_nonmergers")}},
        galaxy_ids=tracer.galaxy_ids, trace=trace, wall_time_s=record["wall_time_s"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(study, indent=1))
    tmp.replace(out)
    print(f"done {problem} seed {seed}: {out}")
    return 0


def select(trace: list[dict[str, Any]], rule: str, patience: int) -> tuple[int, int]:
    """``(stop epoch, selected epoch)`` of ``rule`` on one run's trace (epochs from 1)."""
    losses = [row["source_val_loss"] for row in trace]
    last = len(trace)
    if rule == "patience":
        best, best_epoch, waited = float("inf"), 0, 0
        for epoch, loss in enumerate(losses, 1):
            if loss < best:
                best, best_epoch, waited = loss, epoch, 0
            else:
                waited += 1
            if waited >= patience:
                return epoch, best_epoch
        return last, best_epoch
    if rule == "full_best_loss":
        return last, int(np.argmin(losses)) + 1
    if rule == "best_after_peak":
        peak = int(np.argmax([row["lr"] for row in trace])) + 1
        return last, peak + int(np.argmin(losses[peak:])) + 1 if peak < last else last
    if rule == "last":
        return last, last
    raise ValueError(f"unknown rule {rule!r}; valid: {RULES}")


def _mean_std(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def table(records: Path, out: Path, n_boot: int = 2000) -> dict[str, Any]:
    """Every rule on every problem: accuracies, epochs, truncations, paired Δ vs today's."""
    from analysis.compare import paired_difference_over_seeds

    studies: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(records.glob("*/seed_*.json")):
        study = json.loads(path.read_text())
        studies.setdefault(study["problem"], []).append(study)
    if not studies:
        raise FileNotFoundError(f"no study records under {records}. Fix: run "
                                "benchmarks/stopping_study.sh")
    result: dict[str, Any] = {"rules": list(RULES), "annealed_fraction": ANNEALED_FRACTION,
                              "margin": MARGIN, "problems": {}}
    pooled: dict[str, dict[str, list[np.ndarray]]] = {
        rule: {d: [] for d in DOMAINS} for rule in RULES}
    pooled_groups: dict[str, list[np.ndarray]] = {d: [] for d in DOMAINS}
    for problem, runs in sorted(studies.items()):
        runs.sort(key=lambda s: s["seed"])
        entry: dict[str, Any] = {"seeds": [s["seed"] for s in runs],
                                 "default_patience": runs[0]["default_patience"],
                                 "data_seeds": sorted({s["data"].get("seed") for s in runs}),
                                 "rules": {}}
        correct: dict[str, dict[str, list[np.ndarray]]] = {}
        for rule in RULES:
            rows = []
            correct[rule] = {d: [] for d in DOMAINS}
            for s in runs:
                trace = s["trace"]
                stop, chosen = select(trace, rule, s["default_patience"])
                peak_lr = max(row["lr"] for row in trace)
                row = trace[chosen - 1]
                rows.append({"seed": s["seed"], "stop_epoch": stop, "selected_epoch": chosen,
                             "lr_at_stop_over_peak": trace[stop - 1]["lr"] / peak_lr,
                             **{f"{d}_val_accuracy": row[f"{d}_val_accuracy"] for d in DOMAINS}})
                for d in DOMAINS:
                    correct[rule][d].append(unpack(row[f"{d}_val_correct"],
                                                   len(s["galaxy_ids"][d])))
            entry["rules"][rule] = {
                "runs": rows,
                "stopped_before_anneal": sum(r["lr_at_stop_over_peak"] > ANNEALED_FRACTION
                                             for r in rows),
                **{f"{d}_val_accuracy": _mean_std([100 * r[f"{d}_val_accuracy"] for r in rows])
                   for d in DOMAINS}}
        groups = {d: np.asarray(runs[0]["galaxy_ids"][d]) for d in DOMAINS}
        for rule in FULL_SCHEDULE_RULES:
            entry["rules"][rule]["delta_vs_patience"] = {
                d: _percent(paired_difference_over_seeds(
                    np.stack(correct["patience"][d]), np.stack(correct[rule][d]), groups[d],
                    n_boot, seed=0)) for d in DOMAINS}
        for rule in RULES:
            for d in DOMAINS:
                pooled[rule][d].append(np.stack(correct[rule][d]).mean(0))
        for d in DOMAINS:
            pooled_groups[d].append(np.array([f"{problem}:{g}" for g in groups[d]]))
        result["problems"][problem] = entry
    result["pooled_vs_full_best_loss"] = {
        rule: {d: _percent(paired_difference_over_seeds(
            np.concatenate(pooled["full_best_loss"][d])[None],
            np.concatenate(pooled[rule][d])[None], np.concatenate(pooled_groups[d]),
            n_boot, seed=0)) for d in DOMAINS} for rule in RULES if rule != "full_best_loss"}
    result["choice"] = _choose(result["pooled_vs_full_best_loss"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "stopping.json").write_text(json.dumps(result, indent=1))
    (out / "stopping.md").write_text(markdown(result))
    return result


def _percent(diff: dict[str, Any]) -> dict[str, float]:
    return {k: 100 * diff[k] for k in ("delta", "ci_low", "ci_high")}


def _choose(pooled: dict[str, dict[str, dict[str, float]]]) -> dict[str, str]:
    """The module docstring's decision rule applied to the pooled target Δs."""
    better = [rule for rule in FULL_SCHEDULE_RULES if rule != "full_best_loss"
              and pooled[rule]["target"]["delta"] >= MARGIN
              and pooled[rule]["target"]["ci_low"] > 0]
    if not better:
        return {"rule": "full_best_loss", "why": f"no full-schedule rule beats it by >= "
                f"{MARGIN} target points with an interval above 0"}
    best = max(better, key=lambda r: pooled[r]["target"]["delta"])
    return {"rule": best, "why": f"beats full_best_loss by "
            f"{pooled[best]['target']['delta']:+.1f} target points, interval above 0"}


def _fmt(ms: list[float]) -> str:
    return f"{ms[0]:.1f} ± {ms[1]:.1f}"


def _fmt_delta(d: dict[str, float]) -> str:
    return f"{d['delta']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"


def markdown(result: dict[str, Any]) -> str:
    """The study's tables (one row per problem and rule, then the pooled comparison)."""
    lines = ["| problem | rule | source val | target val | Δ source vs patience | "
             "Δ target vs patience | stopped before the anneal | stop epochs | selected "
             "epochs |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for problem, entry in result["problems"].items():
        for rule in RULES:
            r = entry["rules"][rule]
            delta = r.get("delta_vs_patience")
            name = f"patience {entry['default_patience']}" if rule == "patience" else rule
            lines.append(
                f"| `{problem}` | {name} | {_fmt(r['source_val_accuracy'])} | "
                f"{_fmt(r['target_val_accuracy'])} | "
                f"{_fmt_delta(delta['source']) if delta else '—'} | "
                f"{_fmt_delta(delta['target']) if delta else '—'} | "
                f"{r['stopped_before_anneal']} of {len(r['runs'])} | "
                f"{[x['stop_epoch'] for x in r['runs']]} | "
                f"{[x['selected_epoch'] for x in r['runs']]} |")
    lines += ["", "| all problems pooled, Δ vs full_best_loss | source val | target val |",
              "| --- | --- | --- |"]
    for rule, d in result["pooled_vs_full_best_loss"].items():
        lines.append(f"| {rule} | {_fmt_delta(d['source'])} | {_fmt_delta(d['target'])} |")
    lines += ["", f"Chosen: **{result['choice']['rule']}** ({result['choice']['why']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="train one problem and seed over the whole schedule")
    run_p.add_argument("--problem", required=True)
    run_p.add_argument("--seed", type=int, required=True)
    run_p.add_argument("--data", required=True, help="a development data seed's folder")
    run_p.add_argument("--runs", type=Path, default=Path("runs/stopping"))
    run_p.add_argument("--records", type=Path, default=Path("reports/stopping/records"))
    run_p.add_argument("--epochs", type=int, default=30)
    run_p.add_argument("--set", dest="extra", action="append", default=[],
                       metavar="KEY=VALUE", help="another setting of the configuration")
    table_p = sub.add_parser("table", help="evaluate every rule from the records")
    table_p.add_argument("--records", type=Path, default=Path("reports/stopping/records"))
    table_p.add_argument("--out", type=Path, default=Path("reports/stopping"))
    args = parser.parse_args(argv)
    if args.command == "run":
        from training.denormals import flush_denormals

        flush_denormals()  # before torch's thread pool exists: every thread flushes
        import h5py

        from analysis.headline import HELD_OUT_DATA_SEEDS
        from training.naming import ProblemNameError, problem_config

        try:
            problem_config(args.problem, args.extra)
            with h5py.File(Path(args.data) / "source.h5", "r") as source:
                data_seed = int(source.attrs["seed"])
        except (ProblemNameError, OSError, ValueError, KeyError) as exc:
            parser.exit(2, f"error: {exc}\n")
        if data_seed in HELD_OUT_DATA_SEEDS:
            parser.exit(2, f"error: {args.data} is held-out data seed {data_seed}; the study "
                        "chooses a rule, so it runs on development data only\n")
        return run(args.problem, args.seed, args.data, args.runs, args.records, args.epochs,
                   tuple(args.extra))
    try:
        result = table(args.records, args.out)
    except FileNotFoundError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
