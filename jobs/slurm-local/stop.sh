#!/usr/bin/env bash
# Stop the local Slurm started by start.sh (idempotent).
#
#   sudo jobs/slurm-local/stop.sh           # same GALAXY_DA_SLURM_DIR as start.sh
#
# Cancels the jobs still queued or running, stops every slurmd, slurmctld and (when start.sh
# started it) munged by the PIDs recorded in $GALAXY_DA_SLURM_DIR/pids, then ends what is left
# in the UTS namespaces of this Slurm's slurmd (job steps, and anything they started), found
# through $GALAXY_DA_SLURM_DIR/uts: another Slurm on the machine is not touched. Without that
# file (a start.sh of before the namespaces) it ends every slurmstepd, as it used to.
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

# PIDs of processes in this Slurm's UTS namespaces (every slurmstepd without the uts file).
ours() {
    local proc ns
    local -A mine=()
    if [[ -s $DIR/uts ]]; then
        while read -r ns; do mine[$ns]=1; done <"$DIR/uts"
    fi
    # never the namespace of this script or of init (that would be every process)
    for ns in "$(readlink /proc/self/ns/uts)" "$(readlink /proc/1/ns/uts 2>/dev/null)"; do
        [[ -z $ns ]] || unset "mine[$ns]"
    done
    if ((${#mine[@]} == 0)); then
        pgrep -x slurmstepd || true
        return 0
    fi
    for proc in /proc/[0-9]*; do
        ns=$(readlink "$proc/ns/uts" 2>/dev/null) || continue
        [[ -n ${mine[$ns]:-} ]] && echo "${proc#/proc/}"
    done
    return 0
}

steps() {
    local pid
    for pid in $(ours); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == slurmstepd ]] && echo "$pid"
    done
    return 0
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
        while ((SECONDS < deadline)) && [[ -n $(steps) ]]; do sleep 0.2; done
    fi
fi

slurm_pids=()
while read -r name pid; do
    [[ $name == slurmd* || $name == slurmctld ]] || continue
    kill -0 "$pid" 2>/dev/null && slurm_pids+=("$pid")
done <"$PIDS"
stop_pids 15 "${slurm_pids[@]}"

mapfile -t left < <(ours)
stop_pids 5 "${left[@]}"

munged_pid=$(recorded_pid munged)
if [[ -n $munged_pid ]] && kill -0 "$munged_pid" 2>/dev/null; then
    stop_pids 10 "$munged_pid"
fi
rm -f "$PIDS" "$DIR/uts"
echo "slurm-local: stopped"
