#!/usr/bin/env bash
# Stop the single-node Slurm started by start.sh (idempotent).
#
#   sudo jobs/slurm-local/stop.sh
#
# Cancels the jobs still queued or running, stops slurmd, slurmctld and (when start.sh started
# it) munged by the PIDs recorded in $GALAXY_DA_SLURM_DIR/pids, then ends any slurmstepd left
# behind (job steps of this local Slurm: a machine running it runs no other slurmd).
# State, logs and slurm.conf stay in $GALAXY_DA_SLURM_DIR for the next start.sh.
set -euo pipefail

DIR=${GALAXY_DA_SLURM_DIR:-/var/tmp/galaxy-da-slurm}
PIDS=$DIR/pids
export PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF=$DIR/slurm.conf

# stop_pids TIMEOUT PID...: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL.
stop_pids() {
    local timeout=$1 pid left deadline
    shift
    (($# > 0)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        left=0
        for pid in "$@"; do
            kill -0 "$pid" 2>/dev/null && left=1
        done
        ((left)) || return 0
        sleep 0.2
    done
    kill -KILL "$@" 2>/dev/null || true
}

recorded_pid() {
    if [[ -f $PIDS ]]; then awk -v n="$1" '$1 == n {print $2}' "$PIDS"; fi
}

if [[ ! -f $PIDS ]]; then
    echo "slurm-local: not running (no $PIDS)"
    exit 0
fi

ctld=$(recorded_pid slurmctld)
if [[ -n $ctld ]] && kill -0 "$ctld" 2>/dev/null; then
    mapfile -t jobs < <(squeue -h -o %A 2>/dev/null || true)
    if ((${#jobs[@]} > 0)); then
        scancel "${jobs[@]}" 2>/dev/null || true
        deadline=$((SECONDS + 15))  # let slurmd end the jobs' steps cleanly
        while ((SECONDS < deadline)) && pgrep -x slurmstepd >/dev/null; do sleep 0.2; done
    fi
fi

slurm_pids=()
for daemon in slurmd slurmctld; do
    pid=$(recorded_pid "$daemon")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && slurm_pids+=("$pid")
done
stop_pids 15 "${slurm_pids[@]}"

mapfile -t steps < <(pgrep -x slurmstepd || true)
stop_pids 5 "${steps[@]}"

munged_pid=$(recorded_pid munged)
if [[ -n $munged_pid ]] && kill -0 "$munged_pid" 2>/dev/null; then
    stop_pids 10 "$munged_pid"
fi
rm -f "$PIDS"
echo "slurm-local: stopped"
