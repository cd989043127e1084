#!/usr/bin/env bash
# The headline runs of README "Results at a glance" (issue 10 protocol, benchmarks/RESULTS.md):
# generator v4, held-out data seed 3 (never used for a choice), each problem's default
# configuration, training seeds 1-3, two trials at a time with one torch thread each.
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
             none_deepmerge-perdomain adabn_deepmerge; do
  for seed in $(seq 1 "$SEEDS"); do jobs+=("$study $seed"); done
done
run_one() {
  study=$1; seed=$2; problem=${study%%-*}; extra=(--set epochs=30)
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
"$PY" training/classical.py --data "$DATA" --out "$OUT/classical" --workers 2 --quiet
