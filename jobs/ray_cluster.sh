# shellcheck shell=bash
# A Ray cluster over the nodes of a Slurm allocation (sourced by jobs/search.sbatch).
#
#   source jobs/ray_cluster.sh
#   ray_cluster_init     # nodes, head address, port, temp dir, CPUs/GPUs per node, auth token
#   ray_cluster_start    # head on the first node, workers on the rest; waits until all joined
#   ... python search/run.py --evaluator ray --ray-address "$RAY_CLUSTER_ADDRESS" ...
#   ray_cluster_stop     # idempotent: stops every node's Ray processes of this job
#
# Follows Ray's Slurm template (head from `scontrol show hostnames`, `ray start --block` per node
# through srun, resources from SLURM_* variables) without its fixed sleeps and fixed port.
# Everything is specific to the job, so two jobs sharing a node do not collide: the GCS port and
# the agents' ports are a block derived from SLURM_JOB_ID (moved on when taken), worker ports are
# random, and the temp dir is /tmp/ray_<job id> (short: Ray's unix socket paths must stay under
# ~107 characters). Token authentication is on, with a token made for the job and passed to the
# head, the workers and the driver through the environment (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN),
# so they always agree; a RAY_AUTH_MODE set by the user is respected.
#
# Settings (environment): RAY_PORT (GCS port; default derived from the job id), RAY_HEAD_IP
# (address of the head on the network the nodes share; default: first IPv4 of the head's name),
# RAY_CPUS_PER_NODE / RAY_GPUS_PER_NODE (default: SLURM_CPUS_ON_NODE; SLURM_GPUS_ON_NODE, else
# SLURM_GPUS_PER_NODE, else nvidia-smi's count, else 0), RAY_START_TIMEOUT (s, default 300),
# RAY_STOP_TIMEOUT (s, default 60), RAY_SRUN_ARGS (extra srun options for the ray start steps),
# RAY_START_ARGS (extra `ray start` options), RAY_KEEP_TEMP=1 (keep /tmp/ray_<job id>: logs),
# RAY_STOP_EVERYTHING=1 (also run a plain `ray stop --force` on every node: only for nodes of
# your own, as it stops every Ray cluster of yours there).

RAY_CLUSTER_PIDS=()
RAY_CLUSTER_STARTED=0

_rc_log() { echo "[ray_cluster $(date +%H:%M:%S)] $*"; }

# GPUs Slurm gave this job on a node (a plain number; "a100:4" -> 4).
_rc_gpus_per_node() {
    local n=${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-}}
    n=${n##*:}
    if [[ -z $n ]] && command -v nvidia-smi >/dev/null 2>&1; then
        n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    fi
    [[ $n =~ ^[0-9]+$ ]] || n=0
    echo "$n"
}

# First port of a block of 10 free ones on this node, starting from the job's own block.
_rc_free_port_block() {
    python - "$1" <<'PY'
import socket
import sys

start = int(sys.argv[1])
for attempt in range(100):
    base = 20000 + (start - 20000 + 20 * attempt) % 12000
    try:
        for port in range(base, base + 10):
            with socket.socket() as sock:
                sock.bind(("", port))
    except OSError:
        continue
    print(base)
    break
else:
    sys.exit("no free block of 10 ports found")
PY
}

ray_cluster_init() {
    local job=${SLURM_JOB_ID:?not inside a Slurm job}
    mapfile -t RAY_NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    RAY_HEAD=${RAY_NODES[0]}
    RAY_HEAD_IP=${RAY_HEAD_IP:-$(getent ahostsv4 "$RAY_HEAD" | awk 'NR == 1 {print $1}')}
    [[ -n $RAY_HEAD_IP ]] || { echo "ray_cluster: cannot resolve $RAY_HEAD; set RAY_HEAD_IP" >&2
                               return 1; }
    RAY_CPUS_PER_NODE=${RAY_CPUS_PER_NODE:-${SLURM_CPUS_ON_NODE:-$(nproc)}}
    RAY_GPUS_PER_NODE=${RAY_GPUS_PER_NODE:-$(_rc_gpus_per_node)}
    RAY_PORT=${RAY_PORT:-$(_rc_free_port_block $((20000 + (job % 600) * 20)))}
    RAY_TEMP_DIR=/tmp/ray_$job
    RAY_CLUSTER_ADDRESS=$RAY_HEAD_IP:$RAY_PORT
    export RAY_CLUSTER_ADDRESS RAY_TEMP_DIR
    export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
    if [[ $RAY_AUTH_MODE == token && -z ${RAY_AUTH_TOKEN:-} && -z ${RAY_AUTH_TOKEN_PATH:-} ]]
    then
        RAY_AUTH_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(32))')
        export RAY_AUTH_TOKEN
    fi
    export RAY_USAGE_STATS_ENABLED=0
    # For `ray status` from outside the job (jobs/README.md): address and token, owner-only.
    mkdir -p "$RAY_TEMP_DIR"
    (
        umask 077
        { declare -p RAY_CLUSTER_ADDRESS RAY_AUTH_MODE RAY_AUTH_TOKEN RAY_AUTH_TOKEN_PATH \
            2>/dev/null || true; } | sed 's/^declare -[-x]* /export /' >"$RAY_TEMP_DIR/cluster.env"
    )
    _rc_log "nodes: ${RAY_NODES[*]}; head $RAY_HEAD ($RAY_CLUSTER_ADDRESS); per node" \
        "$RAY_CPUS_PER_NODE CPUs, $RAY_GPUS_PER_NODE GPUs; temp dir $RAY_TEMP_DIR;" \
        "auth $RAY_AUTH_MODE"
}

# ray start options common to every node (ports of this job's block; worker ports random).
_rc_start_args() {
    local -a extra=()
    read -ra extra <<<"${RAY_START_ARGS:-}"
    printf '%s\n' --block --num-cpus="$RAY_CPUS_PER_NODE" --num-gpus="$RAY_GPUS_PER_NODE" \
        --temp-dir="$RAY_TEMP_DIR" --dashboard-agent-listen-port=$((RAY_PORT + 2)) \
        --dashboard-agent-grpc-port=$((RAY_PORT + 3)) --runtime-env-agent-port=$((RAY_PORT + 4)) \
        --metrics-export-port=$((RAY_PORT + 5)) --min-worker-port=0 --max-worker-port=0 \
        --disable-usage-stats "${extra[@]}"
}

# srun of one `ray start --block` on one node, in the background; its PID is recorded.
_rc_srun_ray() {
    local node=$1 log=$2
    shift 2
    local -a srun_extra=()
    read -ra srun_extra <<<"${RAY_SRUN_ARGS:-}"
    srun --nodes=1 --ntasks=1 --cpus-per-task="$RAY_CPUS_PER_NODE" -w "$node" \
        --kill-on-bad-exit=0 "${srun_extra[@]}" ray start "$@" >"$log" 2>&1 &
    RAY_CLUSTER_PIDS+=("$!")
}

# Wait until the head answers and every node has joined (polling; fails fast if a node died).
ray_cluster_wait() {
    python - "$RAY_CLUSTER_ADDRESS" "${#RAY_NODES[@]}" "${RAY_START_TIMEOUT:-300}" \
        "${RAY_CLUSTER_PIDS[@]}" <<'PY'
import logging
import os
import socket
import sys
import time

address, want, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
pids = [int(p) for p in sys.argv[4:]]
deadline = time.monotonic() + timeout
host, port = address.rsplit(":", 1)


def check_alive():
    for pid in pids:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    raise ProcessLookupError
        except (ProcessLookupError, FileNotFoundError):
            sys.exit(f"ray_cluster: a `ray start` step (srun pid {pid}) exited; see its log")


while True:  # the head's GCS port accepts connections
    check_alive()
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"ray_cluster: head {address} not answering after {timeout:.0f} s")
        time.sleep(0.5)

import ray  # noqa: E402

ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
alive = 0
while True:
    alive = sum(1 for node in ray.nodes() if node["Alive"])
    if alive >= want:
        break
    check_alive()
    if time.monotonic() > deadline:
        sys.exit(f"ray_cluster: {alive} of {want} nodes joined after {timeout:.0f} s")
    time.sleep(0.5)
resources = ray.cluster_resources()
print(f"[ray_cluster] ready: {alive} nodes, {resources.get('CPU', 0):g} CPUs, "
      f"{resources.get('GPU', 0):g} GPUs")
ray.shutdown()
PY
}

ray_cluster_start() {
    local logs=${RAY_LOG_DIR:-.} node i
    mkdir -p "$logs"
    local -a common=()
    mapfile -t common < <(_rc_start_args)
    RAY_CLUSTER_STARTED=1
    _rc_log "starting head on $RAY_HEAD"
    _rc_srun_ray "$RAY_HEAD" "$logs/ray-$SLURM_JOB_ID-head.log" --head \
        --node-ip-address="$RAY_HEAD_IP" --port="$RAY_PORT" --include-dashboard=false \
        --dashboard-port=$((RAY_PORT + 1)) --ray-client-server-port=$((RAY_PORT + 6)) \
        "${common[@]}"
    for ((i = 1; i < ${#RAY_NODES[@]}; i++)); do
        node=${RAY_NODES[i]}
        _rc_log "starting worker on $node"
        _rc_srun_ray "$node" "$logs/ray-$SLURM_JOB_ID-worker-$i.log" \
            --address="$RAY_CLUSTER_ADDRESS" "${common[@]}"
    done
    ray_cluster_wait
}

# Runs on each node (through srun) to stop it: SIGTERM to the node's `ray start --block` (Ray
# then drains and stops the node's processes; `ray stop` alone would leave that blocking process
# running forever), wait for them, SIGKILL what is left of the processes using this job's temp
# dir, remove it. Only this job's processes match: their command lines hold its temp dir.
# shellcheck disable=SC2016  # expanded on the node
_RC_NODE_STOP='
start="ray start .*--temp-dir=$RAY_TEMP_DIR([[:space:]]|\$)"
all="$RAY_TEMP_DIR/session_|$start"
# PIDs matching $1, srun excluded (the batch node runs `srun ... ray start ... --temp-dir=...`).
pids() {
    local p
    for p in $(pgrep -f -- "$1"); do
        [[ $(cat "/proc/$p/comm" 2>/dev/null) == srun ]] || echo "$p"
    done
}
mapfile -t found < <(pids "$start")
((${#found[@]})) || mapfile -t found < <(pids "$all")
((${#found[@]} == 0)) || kill -TERM "${found[@]}" 2>/dev/null || true
deadline=$((SECONDS + RAY_STOP_TIMEOUT))
while [[ -n $(pids "$all") ]] && ((SECONDS < deadline)); do sleep 0.2; done
mapfile -t found < <(pids "$all")
((${#found[@]} == 0)) || kill -KILL "${found[@]}" 2>/dev/null || true
if [[ $RAY_STOP_EVERYTHING == 1 ]]; then ray stop --force || true; fi
if [[ $RAY_KEEP_TEMP != 1 ]]; then rm -rf "$RAY_TEMP_DIR"; fi
'

# Stop this job's Ray cluster (idempotent): every node at once, then the `ray start` steps.
ray_cluster_stop() {
    ((RAY_CLUSTER_STARTED)) || return 0
    RAY_CLUSTER_STARTED=0
    local pid node i timeout=${RAY_STOP_TIMEOUT:-60}
    local -a stops=()
    _rc_log "stopping the Ray cluster"
    for node in "${RAY_NODES[@]}"; do
        RAY_TEMP_DIR=$RAY_TEMP_DIR RAY_STOP_TIMEOUT=$timeout RAY_KEEP_TEMP=${RAY_KEEP_TEMP:-0} \
            RAY_STOP_EVERYTHING=${RAY_STOP_EVERYTHING:-0} \
            timeout $((timeout + 30)) srun --overlap --nodes=1 --ntasks=1 -w "$node" \
            bash -c "$_RC_NODE_STOP" &
        stops+=("$!")
    done
    local head_failed=0
    for i in "${!stops[@]}"; do
        if ! wait "${stops[i]}"; then
            _rc_log "stopping Ray on ${RAY_NODES[i]} through srun failed"
            ((i > 0)) || head_failed=1
        fi
    done
    if ((head_failed)); then  # e.g. the job is being cancelled: clean the head node from here
        RAY_TEMP_DIR=$RAY_TEMP_DIR RAY_STOP_TIMEOUT=$timeout RAY_KEEP_TEMP=${RAY_KEEP_TEMP:-0} \
            RAY_STOP_EVERYTHING=${RAY_STOP_EVERYTHING:-0} bash -c "$_RC_NODE_STOP" || true
    fi
    # The `ray start` steps end with their process; srun's own SIGTERM handling is the fallback.
    (
        sleep 10
        kill -TERM "${RAY_CLUSTER_PIDS[@]}" 2>/dev/null
    ) &
    local timer=$!
    for pid in "${RAY_CLUSTER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    kill "$timer" 2>/dev/null || true
    wait "$timer" 2>/dev/null || true
    RAY_CLUSTER_PIDS=()
    _rc_log "Ray cluster stopped"
}
