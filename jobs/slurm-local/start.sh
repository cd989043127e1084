#!/usr/bin/env bash
# Start a local Slurm on this machine, without systemd (for tests and laptops): one node, or
# SLURM_LOCAL_NODES slurmd on this machine (a multi-node cluster for the two-node tests).
#
#   sudo jobs/slurm-local/start.sh          # prints the line to export SLURM_CONF
#   export SLURM_CONF=/var/tmp/galaxy-da-slurm/slurm.conf
#   sbatch --wait jobs/search.sbatch ...
#   sudo jobs/slurm-local/stop.sh
#
#   sudo SLURM_LOCAL_NODES=2 GALAXY_DA_SLURM_DIR=/var/tmp/galaxy-da-slurm2 \
#       SLURM_LOCAL_CTLD_PORT=6827 SLURM_LOCAL_SLURMD_PORT=6828 jobs/slurm-local/start.sh
#
# Writes $GALAXY_DA_SLURM_DIR/slurm.conf (default /var/tmp/galaxy-da-slurm) from slurm.conf.in,
# creates /run/munge and a MUNGE key if missing, starts munged (as the munge user, unless a
# munged already answers), slurmctld -D and one `slurmd -D -N <node>` per node, records their
# PIDs in $GALAXY_DA_SLURM_DIR/pids and waits until sinfo shows every node idle.
# One node: the node is this host (`hostname -s`, all CPUs of nproc, 95% of the memory); when the
# name does not resolve, "127.0.0.1 <host>" is added to /etc/hosts. N nodes: galaxyda1..N on
# 127.0.0.2..N+1 (lines "127.0.0.K galaxydaJ" are added to /etc/hosts when missing), slurmd
# ports SLURMD_PORT..+N-1, the CPUs and 95% of the memory split evenly. Each slurmd runs in a
# UTS namespace of its own whose host name is its node name (jobs see `hostname` = their node,
# as on real nodes); stop.sh uses these namespaces to find the job steps of this Slurm only.
# /etc/slurm/slurm.conf becomes a link to our file when it does not exist (so plain sbatch works).
# Idempotent: when the daemons of a previous start.sh still run, it only waits for the nodes.
# Environment: GALAXY_DA_SLURM_DIR, SLURM_LOCAL_NODES (default 1), SLURM_LOCAL_TIMEOUT (seconds
# to wait, default 60), SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT (default 6817 / 6818).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${GALAXY_DA_SLURM_DIR:-/var/tmp/galaxy-da-slurm}
CONF=$DIR/slurm.conf
PIDS=$DIR/pids
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
NODES=${SLURM_LOCAL_NODES:-1}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
export PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF=$CONF

die() { echo "slurm-local: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "start.sh must run as root (slurmd starts jobs as their users)"
[[ $NODES =~ ^[1-9][0-9]?$ && $NODES -le 64 ]] || die "SLURM_LOCAL_NODES must be 1..64"
for cmd in slurmctld slurmd sinfo munged munge unmunge unshare; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found: run jobs/slurm-local/install.sh"
done

HOST=$(hostname -s)
if ! getent hosts "$HOST" >/dev/null; then
    echo "127.0.0.1 $HOST  # added by galaxy-da jobs/slurm-local/start.sh" >>/etc/hosts
    echo "slurm-local: added '127.0.0.1 $HOST' to /etc/hosts (hostname -s did not resolve)"
fi
ADDR=$(getent ahostsv4 "$HOST" | awk 'NR == 1 {print $1}')
[[ -n $ADDR ]] || ADDR=127.0.0.1

NAMES=()
ADDRS=()
if ((NODES == 1)); then
    NAMES=("$HOST")
    ADDRS=("$ADDR")
else
    for ((i = 1; i <= NODES; i++)); do
        name=galaxyda$i
        addr=127.0.0.$((i + 1))
        found=$(getent ahostsv4 "$name" | awk 'NR == 1 {print $1}' || true)
        if [[ -z $found ]]; then
            echo "$addr $name  # added by galaxy-da jobs/slurm-local/start.sh" >>/etc/hosts
            echo "slurm-local: added '$addr $name' to /etc/hosts"
        elif [[ $found != "$addr" ]]; then
            die "$name resolves to $found, not $addr (see /etc/hosts)"
        fi
        NAMES+=("$name")
        ADDRS+=("$addr")
    done
fi

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
recorded_pid() { if [[ -f $PIDS ]]; then awk -v n="$1" '$1 == n {print $2}' "$PIDS"; fi; }

node_state() { sinfo -h -N -n "$1" -o %T 2>/dev/null | head -n 1 || true; }

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state name waiting daemon
    local -A resumed=()
    while ((SECONDS < deadline)); do
        waiting=()
        for name in "${NAMES[@]}"; do
            state=$(node_state "$name")
            case $state in
                idle | mixed | allocated | completing) ;;
                *drain* | down* | *fail*)
                    if [[ -z ${resumed[$name]:-} ]]; then
                        scontrol update NodeName="$name" State=RESUME >/dev/null 2>&1 || true
                        resumed[$name]=1
                    fi
                    waiting+=("$name ($state)") ;;
                *) waiting+=("$name (${state:-no answer})") ;;
            esac
        done
        if ((${#waiting[@]} == 0)); then
            echo "slurm-local: nodes ${NAMES[*]} up (SLURM_CONF=$CONF)"
            return 0
        fi
        for daemon in slurmctld "${NAMES[@]/#/slurmd-}"; do
            alive "$(recorded_pid "$daemon")" ||
                die "$daemon exited; see $DIR/log/$daemon.log and $DIR/log/$daemon.out"
        done
        sleep 0.5
    done
    die "not idle after $TIMEOUT s: ${waiting[*]}; see $DIR/log"
}

# The UTS namespaces of our slurmd (their job steps live in them too), for stop.sh.
record_namespaces() {
    local name pid ns own
    own=$(readlink /proc/self/ns/uts)
    : >"$DIR/uts.tmp"
    for name in "${NAMES[@]}"; do
        pid=$(recorded_pid "slurmd-$name")
        ns=$(readlink "/proc/$pid/ns/uts" 2>/dev/null || true)
        [[ -n $ns && $ns != "$own" ]] && echo "$ns" >>"$DIR/uts.tmp"
    done
    mv "$DIR/uts.tmp" "$DIR/uts"
}

running=1
alive "$(recorded_pid slurmctld)" || running=0
for name in "${NAMES[@]}"; do
    alive "$(recorded_pid "slurmd-$name")" || running=0
done
if ((running)); then
    echo "slurm-local: already running (PIDs in $PIDS)"
    wait_idle
    echo "export SLURM_CONF=$CONF"
    exit 0
fi

mkdir -p "$DIR"/{state,spool,log,run}
CPUS=$(($(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) / NODES))  # nproc obeys OMP_*
((CPUS >= 1)) || CPUS=1
MEMORY_MB=$(free -m | awk -v n="$NODES" '/^Mem:/ {printf "%d", $2 * 0.95 / n}')
: >"$CONF.nodes"
for i in "${!NAMES[@]}"; do
    echo "NodeName=${NAMES[i]} NodeAddr=${ADDRS[i]} Port=$((SLURMD_PORT + i)) CPUs=$CPUS" \
        "RealMemory=$MEMORY_MB State=UNKNOWN" >>"$CONF.nodes"
    mkdir -p "$DIR/spool/${NAMES[i]}"
done
NODELIST=$(IFS=,; echo "${NAMES[*]}")
sed -e "s|@HOST@|$HOST|g" -e "s|@DIR@|$DIR|g" -e "s|@NODELIST@|$NODELIST|g" \
    -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
    -e "/^@NODES@\$/{r $CONF.nodes" -e "d}" "$HERE/slurm.conf.in" >"$CONF.tmp"
rm -f "$CONF.nodes"
mv "$CONF.tmp" "$CONF"
if [[ ! -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]]; then
    mkdir -p /etc/slurm
    ln -s "$CONF" /etc/slurm/slurm.conf
fi

: >"$PIDS.tmp"
# MUNGE: reuse a munged that already answers (not ours to stop); else start one as munge.
if echo ok | munge 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "slurm-local: using the munged already running"
else
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
        echo "slurm-local: created /etc/munge/munge.key"
    fi
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged --force
    deadline=$((SECONDS + 20))
    until [[ -s /run/munge/munged.pid ]] && echo ok | munge 2>/dev/null | unmunge >/dev/null 2>&1
    do
        ((SECONDS < deadline)) || die "munged did not start; see /var/log/munge/munged.log"
        sleep 0.2
    done
    echo "munged $(cat /run/munge/munged.pid)" >>"$PIDS.tmp"
fi

# Each daemon in a session of its own, so that it outlives this script and its terminal; each
# slurmd in a UTS namespace named after its node (setsid, unshare and sh exec: same PID).
setsid slurmctld -D -f "$CONF" >"$DIR/log/slurmctld.out" 2>&1 </dev/null &
echo "slurmctld $!" >>"$PIDS.tmp"
for name in "${NAMES[@]}"; do
    # shellcheck disable=SC2016  # expanded by that sh
    setsid unshare --uts -- sh -c 'hostname "$1" && exec slurmd -D -N "$1" -f "$2"' sh \
        "$name" "$CONF" >"$DIR/log/slurmd-$name.out" 2>&1 </dev/null &
    echo "slurmd-$name $!" >>"$PIDS.tmp"
done
mv "$PIDS.tmp" "$PIDS"
wait_idle
record_namespaces
echo "export SLURM_CONF=$CONF"
