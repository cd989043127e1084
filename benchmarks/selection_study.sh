#!/usr/bin/env bash
# The selection study of issue 13 (benchmarks/results/selection.md "Label-free model
# selection"): random searches of MMD and DANN (both DA families) on two development data sets, every trial
# recording every label-free validator; the default objective is chosen on set A (data seed
# 2, reference: target *validation* accuracy) and confirmed on set B (data seed 1, reference:
# target test accuracy). No held-out data is read. Short trials (3 epochs of 20 batches of
# 64, batch size fixed) so that ~100 trials fit on 2 CPU cores in about an hour; two trials at
# a time, one torch thread each. Resumable: rerun to continue (--resume). Usage: bash benchmarks/selection_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/selection}
mkdir -p "$OUT"
TRIAL=(--set epochs=3 --set max_batches_per_epoch=20 --set batch_size=64)
declare -A DATA=([A]=data/benchmark-v4-seed2-dev [B]=data/benchmark-v4-seed1-dev)
declare -A SEED=([A]=2 [B]=1)
declare -A EVALS=([A]=30 [B]=22)
# A wall-clock cap per search (running trials finish): the study must fit a 2-core session.
declare -A TIMEOUT=([A]=1500 [B]=1100)
for set in A B; do
  [ -f "${DATA[$set]}/target.h5" ] || "$PY" galaxies/simulate.py --out "${DATA[$set]}" \
      --n-mergers 3000 --n-nonmergers 2700 --seed "${SEED[$set]}" --workers 2
  for problem in mmd_deepmerge dann_deepmerge; do
    dir="$OUT/$set/$problem"
    resume=(); [ -f "$dir/results.csv" ] && resume=(--resume)
    echo "set $set $problem: start $(date -u +%H:%M:%S)"
    "$PY" search/run.py --problem "$problem" --data "${DATA[$set]}" --log-dir "$dir" \
        --search random --max-evals "${EVALS[$set]}" --timeout "${TIMEOUT[$set]}" --workers 2 --seed "${SEED[$set]}" \
        --quiet "${TRIAL[@]}" "${resume[@]}" > "$OUT/log_${set}_${problem}.txt" 2>&1
    echo "set $set $problem: done $(date -u +%H:%M:%S)"
  done
done
"$PY" search/selection_study.py --choose "$OUT"/A/* --confirm "$OUT"/B/* \
    --json benchmarks/records/selection_study.json
