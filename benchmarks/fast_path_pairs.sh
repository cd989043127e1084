#!/usr/bin/env bash
# Does the fast path lose accuracy? The paired comparison behind precision=auto (issue 22,
# benchmarks/results/speed.md "Does the fast path lose accuracy?"): full-length none / MMD /
# DANN DeepMerge trials at their default configurations, training seeds 1-3, fp32 (eager, NCHW)
# against the path that precision=auto resolves to on this machine, on DEVELOPMENT data seed 2
# (3000 mergers + 2700 non-mergers, generator v4); compared on the validation splits only (no
# test split and no held-out data seed is read by this choice).
# Two trials at a time with one torch thread each. Resumable: a trial whose record.json
# exists is skipped. Records (JSON, no checkpoints) and the comparison land in
# reports/fast_path/ and, for the no-early-stopping control of no-DA,
# reports/fast_path_nostop/. Usage: bash benchmarks/fast_path_pairs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/benchmark-v4-seed2-dev}
OUT=${OUT:-runs/fast_path}
SEEDS=${SEEDS:-3}
REPORT=${REPORT:-reports/fast_path}
mkdir -p "$OUT"
[ -f "$DATA/target.h5" ] || "$PY" galaxies/simulate.py --out "$DATA" --n-mergers 3000 \
    --n-nonmergers 2700 --seed 2 --workers 2
jobs=()
for problem in dann_deepmerge mmd_deepmerge none_deepmerge; do  # longest first
  for seed in $(seq 1 "$SEEDS"); do
    for path in auto fp32; do jobs+=("$problem $seed $path"); done
  done
done
run_one() {
  problem=$1; seed=$2; path=$3
  dir="$OUT/$path/$problem/seed_$seed"
  [ -f "$dir/record.json" ] && { echo "skip $problem seed $seed $path"; return 0; }
  echo "start $problem seed $seed $path $(date -u +%H:%M:%S)"
  OMP_NUM_THREADS=1 "$PY" training/train.py --problem "$problem" --data "$DATA" --seed "$seed" \
      --set precision="$path" --set epochs=30 --threads 1 --out "$dir" --quiet \
      > "$OUT/log_${problem}_${seed}_$path.txt" 2>&1 \
      || { echo "FAILED $problem seed $seed $path (see $OUT/log_${problem}_${seed}_$path.txt)"; return 1; }
  echo "done $problem seed $seed $path $(date -u +%H:%M:%S)"
}
export -f run_one; export PY DATA OUT
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'run_one $0 $1 $2'
"$PY" benchmarks/fast_path_compare.py --runs "$OUT" --out "$REPORT"
# The control: no-DA without early stopping (patience=30, the best epoch of the full
# schedule), so that a run stopped in the high-learning-rate phase cannot stand in for a
# precision effect (benchmarks/results/speed.md explains why it is needed).
control=()
for seed in $(seq 1 "$SEEDS"); do
  for path in auto fp32; do control+=("$seed $path"); done
done
run_control() {
  seed=$1; path=$2; dir="${OUT}_nostop/$path/none_deepmerge/seed_$seed"
  [ -f "$dir/record.json" ] && { echo "skip control seed $seed $path"; return 0; }
  OMP_NUM_THREADS=1 "$PY" training/train.py --problem none_deepmerge --data "$DATA" \
      --seed "$seed" --set precision="$path" --set epochs=30 --set patience=30 --threads 1 \
      --out "$dir" --quiet > "${OUT}_nostop_${seed}_$path.txt" 2>&1
}
export -f run_control
printf '%s\n' "${control[@]}" | xargs -P 2 -L 1 bash -c 'run_control $0 $1'
"$PY" benchmarks/fast_path_compare.py --runs "${OUT}_nostop" --out "${REPORT}_nostop"
