#!/usr/bin/env bash
# The paper-scale study (issue 25) on one H100-class GPU: the one prepared device run.
#
#   bash benchmarks/gpu_study.sh                     # on the device machine ($OUT set by it)
#   DRY_RUN=1 OUT=/tmp/x bash benchmarks/gpu_study.sh  # anywhere: checks and prints the plan
#
# Runs `analysis/paper_study.py --profile gpu` (GPU_PACK trials packed on the GPU as processes,
# ResNet18 first: what the CPU cannot do, then the DeepMerge stages) with a deadline of
# DEADLINE_MIN minutes (default 7; a trial still running a minute later is stopped, so with the
# install and the tables the call ends inside the device tool's 10 minutes), training folders in
# /tmp (checkpoints never come back) and the study's records and tables in $REPORTS (default
# /tmp/paper_reports), which starts as a copy of the committed reports/paper/, so the study
# skips every search and seed already there; they come back as $OUT/reports.tar.gz (the device
# returns at most 8 files, 2 folders down): `tar -xzf reports.tar.gz -C reports/paper`, check,
# commit. Also $OUT/gpu_study.log, $OUT/nvidia-smi.txt and $OUT/wall.json (wall time, device).
# Resumable like the study: rerun on a warm machine to go on.
#
# The device's python3 holds torch but not GalSim, DeepHyper, ConfigSpace or astropy: prepare
# them here with `python benchmarks/gpu_wheels.py` (wheels for python 3.12 in .whl/, GalSim's
# debug sections stripped: 30 MiB with the 23 MiB tree, inside the 64 MiB a call carries), name
# .whl in the device call's carry; they are installed to /tmp/site first. The script stops with
# one line naming any package it cannot import. Exit status: the study's (0 done, 1 work left by the
# deadline or a failed stage, 2 bad arguments or a missing package).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder that comes back}
if [ -z "${PY:-}" ]; then  # this checkout's environment where there is one (make install)
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
DEADLINE_MIN=${DEADLINE_MIN:-7}
RUNS=${RUNS:-/tmp/paper_runs}
REPORTS=${REPORTS:-/tmp/paper_reports}
mkdir -p "$OUT" "$REPORTS"
# The committed records first: finished searches and seeds are not rerun (paper_study resumes
# from them), and what comes back is the whole reports/paper/ with the GPU's records added.
# (Copied only into a fresh $REPORTS: a warm rerun goes on from the last run's, and `cp -n`
# exits 1 on a skipped file in coreutils 9.2-9.4.)
[ -e "$REPORTS/searches" ] || cp -r reports/paper/. "$REPORTS/"
if [ -z "${DRY_RUN:-}" ] && compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
for module in torch galsim deephyper ConfigSpace h5py pandas sklearn matplotlib tqdm; do
  "$PY" -c "import $module" 2> /dev/null || {
    echo "error: python package '$module' is missing for $PY. Fix: set PY to a python" \
         "that has it, or put its wheel in .whl/ (benchmarks/results/gpu.md)" >&2; exit 2; }
done
if [ -n "${DRY_RUN:-}" ]; then
  exec "$PY" analysis/paper_study.py --profile gpu --runs "$RUNS" --reports "$REPORTS" \
      --deadline-min "$DEADLINE_MIN" --dry-run
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "error: no CUDA device. Fix: run on the GPU machine, or DRY_RUN=1 to see the plan" >&2
  exit 2; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
start=$(date +%s)
set +e
"$PY" analysis/paper_study.py --profile gpu --runs "$RUNS" --reports "$REPORTS" \
    --deadline-min "$DEADLINE_MIN" 2>&1 | tee "$OUT/gpu_study.log"
code=${PIPESTATUS[0]}
# Only 8 files, 2 folders down, come back from $OUT: the records travel as one archive.
tar -czf "$OUT/reports.tar.gz" -C "$REPORTS" .
set -e
"$PY" - "$OUT/wall.json" "$start" "$code" <<'PYEOF'
import json, sys, time
import torch
path, start, code = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
json.dump({"wall_s": time.time() - start, "exit": code, "device": torch.cuda.get_device_name(0),
           "torch": torch.__version__}, open(path, "w"), indent=1)
PYEOF
exit "$code"
