#!/usr/bin/env bash
# The headline runs of README "Results at a glance" (issue 10 protocol,
# benchmarks/results/protocol-and-headline.md):
# generator v4, held-out data seed 3 (never used for a choice), each problem's default
# configuration, training seeds 1-3, two trials at a time (each with every usable core's torch
# thread unless OMP_NUM_THREADS is set; benchmarks/methods_full.sh sets OMP_NUM_THREADS=1).
# MMD and DANN run eager; to fit the 2-core CPU budget no-DA and the controls (which started
# later) run with compile=1 channels_last=1: the same network, loss and optimiser, fused
# kernels (~1.3x on this machine, benchmarks/results/speed.md "Fast trials").
# Resumable: a seed whose record.json exists is skipped. Usage: bash benchmarks/headline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/benchmark-v4-seed3-heldout}
OUT=${OUT:-runs/headline}
SEEDS=${SEEDS:-3}
mkdir -p "$OUT"
[ -f "$DATA/target.h5" ] || "$PY" galaxies/simulate.py --out "$DATA" --n-mergers 3000 \
    --n-nonmergers 2700 --seed 3 --workers 2
jobs=()
# Longest first (DANN waits 10 epochs before stopping early).
for study in dann_deepmerge mmd_deepmerge jointbn_deepmerge none_deepmerge \
             none_deepmerge-perdomain; do
  for seed in $(seq 1 "$SEEDS"); do jobs+=("$study $seed"); done
done
# JOBS="study seed" lines: run only those (e.g. while other seeds still run elsewhere).
[ -n "${JOBS:-}" ] && mapfile -t jobs <<< "$JOBS"
run_one() {
  study=$1; seed=$2; problem=${study%%-*}; extra=(--set epochs=30)
  [[ $problem == mmd_* || $problem == dann_* ]] || extra+=(--set compile=1 --set channels_last=1)
  [[ $study == *-perdomain ]] && extra+=(--set normalization=per_domain)
  dir="$OUT/seeds/$study"
  [ -f "$dir/seed_$seed/record.json" ] && { echo "skip $study seed $seed"; return 0; }
  echo "start $study seed $seed $(date -u +%H:%M:%S)"
  "$PY" search/seeds.py --problem "$problem" --data "$DATA" --out "$dir" --seeds "$SEEDS" \
      --only-seed "$seed" --workers 1 --quiet "${extra[@]}" > "$OUT/log_${study}_$seed.txt" 2>&1 \
      || { echo "FAILED $study seed $seed (see $OUT/log_${study}_$seed.txt)"; return 1; }
  echo "done $study seed $seed $(date -u +%H:%M:%S)"
}
export -f run_one; export PY DATA OUT SEEDS
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'run_one $0 $1'
# AdaBN trains exactly as no-DA does (same seed, same weights: tests/test_controls.py), so its
# seeds re-score the no-DA seeds' networks with the BatchNorm statistics re-estimated on the
# target training images instead of training them again.
for seed in $(seq 1 "$SEEDS"); do
  dir="$OUT/seeds/adabn_deepmerge/seed_$seed"
  [ -f "$dir/record.json" ] && continue
  "$PY" training/train.py --problem adabn_deepmerge --data "$DATA" --seed "$seed" \
      --set epochs=30 --set compile=1 --set channels_last=1 --threads 1 \
      --from-trial "$OUT/seeds/none_deepmerge/seed_$seed" --out "$dir" --quiet \
      > "$OUT/log_adabn_deepmerge_$seed.txt" 2>&1
done
# Its seed-study file, so that analysis/report.py reads the AdaBN seeds like any other.
"$PY" - "$OUT/seeds" <<'PYEOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
meta = json.loads((root / "none_deepmerge" / "seeds.json").read_text())
meta.update(problem="adabn_deepmerge", method="adabn",
            origin="re-scored from the none_deepmerge seeds (training/train.py --from-trial)")
meta["config"] = {**meta["config"], "method": "adabn"}
(root / "adabn_deepmerge" / "seeds.json").write_text(json.dumps(meta, indent=1))
PYEOF
"$PY" training/classical.py --data "$DATA" --out "$OUT/classical" --seeds "$SEEDS" --workers 2 --quiet
# Records into reports/headline, the README table, Figure 1, and the report's Table 1, its
# companion completeness table and the diagnostics figures (every seed study but per-domain
# normalisation, which shares none_deepmerge's problem name).
"$PY" analysis/headline.py collect --runs "$OUT" --out reports/headline
"$PY" analysis/headline.py table --records reports/headline --readme benchmarks/results/protocol-and-headline.md
"$PY" analysis/report.py --runs "$OUT/seeds/none_deepmerge" "$OUT/seeds/jointbn_deepmerge" \
    "$OUT/seeds/adabn_deepmerge" "$OUT/seeds/mmd_deepmerge" "$OUT/seeds/dann_deepmerge" \
    "$OUT/classical" --out reports/headline/report --diagnostics
# Temperature scaling of every CNN trial (source validation split), benchmarks/results/apply.md.
"$PY" apply/calibrate.py --trial "$OUT"/seeds/*/seed_* --summary reports/headline/calibration.json
