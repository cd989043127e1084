#!/usr/bin/env bash
# Start a single-node Slurm on this machine, without systemd (for tests and laptops).
#
#   sudo jobs/slurm-local/start.sh          # prints the line to export SLURM_CONF
#   export SLURM_CONF=/var/tmp/galaxy-da-slurm/slurm.conf
#   sbatch --wait jobs/search.sbatch ...
#   sudo jobs/slurm-local/stop.sh
#
# Writes $GALAXY_DA_SLURM_DIR/slurm.conf (default /var/tmp/galaxy-da-slurm) from slurm.conf.in for
# this host (CPUs from nproc, memory from free), creates /run/munge and a MUNGE key if missing,
# starts munged (as the munge user, unless a munged already answers), slurmctld -D and slurmd -D,
# records their PIDs in $GALAXY_DA_SLURM_DIR/pids and waits until sinfo shows the node idle.
# /etc/slurm/slurm.conf becomes a link to our file when it does not exist (so plain sbatch works).
# `hostname -s` must resolve: when it does not, a line "127.0.0.1 <host>" is added to /etc/hosts.
# Idempotent: when the daemons of a previous start.sh still run, it only waits for the node.
# Environment: GALAXY_DA_SLURM_DIR, SLURM_LOCAL_TIMEOUT (seconds to wait, default 60),
# SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT (default 6817 / 6818).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${GALAXY_DA_SLURM_DIR:-/var/tmp/galaxy-da-slurm}
CONF=$DIR/slurm.conf
PIDS=$DIR/pids
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
export PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF=$CONF

die() { echo "slurm-local: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "start.sh must run as root (slurmd starts jobs as their users)"
for cmd in slurmctld slurmd sinfo munged munge unmunge; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found: run jobs/slurm-local/install.sh"
done

HOST=$(hostname -s)
if ! getent hosts "$HOST" >/dev/null; then
    echo "127.0.0.1 $HOST  # added by galaxy-da jobs/slurm-local/start.sh" >>/etc/hosts
    echo "slurm-local: added '127.0.0.1 $HOST' to /etc/hosts (hostname -s did not resolve)"
fi
ADDR=$(getent ahostsv4 "$HOST" | awk 'NR == 1 {print $1}')
[[ -n $ADDR ]] || ADDR=127.0.0.1

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
recorded_pid() { if [[ -f $PIDS ]]; then awk -v n="$1" '$1 == n {print $2}' "$PIDS"; fi; }

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1 || true; }

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state resumed=0
    while ((SECONDS < deadline)); do
        state=$(node_state)
        case $state in
            idle | mixed | allocated | completing)
                echo "slurm-local: node $HOST is $state (SLURM_CONF=$CONF)"
                return 0 ;;
            *drain* | down* | *fail*)
                if ((resumed == 0)); then
                    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        for daemon in slurmctld slurmd; do
            alive "$(recorded_pid "$daemon")" ||
                die "$daemon exited; see $DIR/log/$daemon.log and $DIR/log/$daemon.out"
        done
        sleep 0.5
    done
    die "node $HOST not idle after $TIMEOUT s (state '${state:-no answer}'); see $DIR/log"
}

if alive "$(recorded_pid slurmctld)" && alive "$(recorded_pid slurmd)"; then
    echo "slurm-local: already running (PIDs in $PIDS)"
    wait_idle
    echo "export SLURM_CONF=$CONF"
    exit 0
fi

mkdir -p "$DIR"/{state,spool,log,run}
CPUS=$(nproc)
MEMORY_MB=$(free -m | awk '/^Mem:/ {printf "%d", $2 * 0.95}')
sed -e "s|@HOST@|$HOST|g" -e "s|@ADDR@|$ADDR|g" -e "s|@DIR@|$DIR|g" -e "s|@CPUS@|$CPUS|g" \
    -e "s|@MEMORY_MB@|$MEMORY_MB|g" -e "s|@CTLD_PORT@|${SLURM_LOCAL_CTLD_PORT:-6817}|g" \
    -e "s|@SLURMD_PORT@|${SLURM_LOCAL_SLURMD_PORT:-6818}|g" "$HERE/slurm.conf.in" >"$CONF.tmp"
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

# Each daemon in a session of its own, so that it outlives this script and its terminal.
setsid slurmctld -D -f "$CONF" >"$DIR/log/slurmctld.out" 2>&1 </dev/null &
echo "slurmctld $!" >>"$PIDS.tmp"
setsid slurmd -D -f "$CONF" >"$DIR/log/slurmd.out" 2>&1 </dev/null &
echo "slurmd $!" >>"$PIDS.tmp"
mv "$PIDS.tmp" "$PIDS"
wait_idle
echo "export SLURM_CONF=$CONF"
