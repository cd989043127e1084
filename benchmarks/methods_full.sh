#!/usr/bin/env bash
# The extended methods table of issue 13 at full length
# (benchmarks/results/methods.md "Every method at its default configuration"): every DeepMerge
# method at its default configuration (30 epochs, each problem's patience), generator v4, held-out data seed 3, training seeds 1-3 — the
# headline's protocol. no-DA, MMD, DANN and the joint-BN control (the reference of the second
# paired column) are the headline's own seeds (runs/headline, made by benchmarks/headline.sh)
# and are linked, not retrained; CORAL, MMD+FE, DANN+FE, CDAN and SIDDA
# are trained here, two trials at a time with one torch thread each (OMP_NUM_THREADS=1), with compile=1
# channels_last=1 (the same network, loss and optimiser with fused kernels, as the headline's
# no-DA and controls: benchmarks/results/speed.md "Fast trials"). Then the table from the records
# (analysis/headline.py). Resumable: a seed whose record.json exists is skipped.
# Usage: bash benchmarks/methods_full.sh        (about 4 CPU-hours on 2 cores; minutes on a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/benchmark-v4-seed3-heldout}
HEADLINE=${HEADLINE:-runs/headline}
OUT=${OUT:-runs/methods_full}
RECORDS=${RECORDS:-reports/methods_full}
SEEDS=${SEEDS:-3}
mkdir -p "$OUT/seeds"
for study in none_deepmerge jointbn_deepmerge mmd_deepmerge dann_deepmerge; do
  [ -f "$HEADLINE/seeds/$study/seeds.json" ] || {
    echo "error: $HEADLINE/seeds/$study has no seed study. Fix: run bash benchmarks/headline.sh first"
    exit 2; }
  [ -e "$OUT/seeds/$study" ] || ln -s "$(realpath "$HEADLINE/seeds/$study")" "$OUT/seeds/$study"
done
jobs=()
# Longest first: the DANN family waits 10 epochs before stopping early.
for study in cdan_deepmerge dannfe_deepmerge sidda_deepmerge mmdfe_deepmerge coral_deepmerge; do
  for seed in $(seq 1 "$SEEDS"); do jobs+=("$study $seed"); done
done
[ -n "${JOBS:-}" ] && mapfile -t jobs <<< "$JOBS"   # JOBS="study seed" lines: only those
run_one() {
  study=$1; seed=$2; dir="$OUT/seeds/$study"
  [ -f "$dir/seed_$seed/record.json" ] && { echo "skip $study seed $seed"; return 0; }
  echo "start $study seed $seed $(date -u +%H:%M:%S)"
  OMP_NUM_THREADS=1 "$PY" search/seeds.py --problem "$study" --data "$DATA" --out "$dir" --seeds "$SEEDS" \
      --only-seed "$seed" --workers 1 --quiet --set epochs=30 --set compile=1 \
      --set channels_last=1 > "$OUT/log_${study}_$seed.txt" 2>&1 \
      || { echo "FAILED $study seed $seed (see $OUT/log_${study}_$seed.txt)"; return 1; }
  echo "done $study seed $seed $(date -u +%H:%M:%S)"
}
export -f run_one; export PY DATA OUT SEEDS
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'run_one $0 $1'
"$PY" analysis/headline.py collect --runs "$OUT" --out "$RECORDS"
"$PY" analysis/headline.py table --records "$RECORDS"
