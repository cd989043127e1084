#!/usr/bin/env bash
# The extended methods table of issue 13
# (benchmarks/results/methods.md "Every method at a short budget"):
# every DeepMerge method at its default configuration, held-out data seed 3, training seeds 1-3,
# SHORT trials (3 epochs of 20 batches of 64: the budget of the selection study), two trials at
# a time. Then the table from the records (analysis/headline.py). Resumable (done seeds are
# skipped). Usage: bash benchmarks/methods_short.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/benchmark-v4-seed3-heldout}
OUT=${OUT:-runs/methods_short}
for problem in none_deepmerge mmd_deepmerge dann_deepmerge coral_deepmerge mmdfe_deepmerge \
               dannfe_deepmerge cdan_deepmerge sidda_deepmerge; do
  "$PY" search/seeds.py --problem "$problem" --data "$DATA" --seeds 3 --workers 2 --quiet \
      --out "$OUT/seeds/$problem" --set epochs=3 --set max_batches_per_epoch=20 \
      --set batch_size=64
done
"$PY" analysis/headline.py collect --runs "$OUT" --out reports/methods_short
"$PY" analysis/headline.py table --records reports/methods_short
