#!/usr/bin/env bash
# The stopping-rule study of issue 25 (benchmarks/stopping_study.py explains the rules and the
# decision written down before the runs): each problem's default configuration over its whole
# 30-epoch schedule, development data seed 2, training seeds 1-3, two trials at a time with one
# torch thread each. Resumable: finished records are skipped, a killed trial resumes from its
# resume.pt. Records (JSON) go to reports/stopping/records; then the table.
# Usage: bash benchmarks/stopping_study.sh   (PROBLEMS="..." SEEDS=N to change the set)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/benchmark-v4-seed2-dev}
RUNS=${RUNS:-runs/stopping}
RECORDS=${RECORDS:-reports/stopping/records}
SEEDS=${SEEDS:-3}
PROBLEMS=${PROBLEMS:-"mmd_deepmerge dann_deepmerge jointbn_deepmerge none_deepmerge"}
[ -f "$DATA/target.h5" ] || "$PY" galaxies/simulate.py --out "$DATA" --n-mergers 3000 \
    --n-nonmergers 2700 --seed 2 --workers 2
mkdir -p "$RUNS"
jobs=()
for seed in $(seq 1 "$SEEDS"); do
  for problem in $PROBLEMS; do jobs+=("$problem $seed"); done
done
run_one() {
  echo "start $1 seed $2 $(date -u +%H:%M:%S)"
  OMP_NUM_THREADS=1 "$PY" benchmarks/stopping_study.py run --problem "$1" --seed "$2" \
      --data "$DATA" --runs "$RUNS" --records "$RECORDS" > "$RUNS/log_$1_$2.txt" 2>&1 \
      || { echo "FAILED $1 seed $2 (see $RUNS/log_$1_$2.txt)"; return 1; }
  echo "done $1 seed $2 $(date -u +%H:%M:%S)"
}
export -f run_one; export PY DATA RUNS RECORDS
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'run_one $0 $1'
"$PY" benchmarks/stopping_study.py table --records "$RECORDS" --out "$(dirname "$RECORDS")"
