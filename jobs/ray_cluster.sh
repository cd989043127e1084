# shellcheck shell=bash
# A Ray cluster over the nodes of a Slurm allocation (sourced by jobs/search.sbatch).
#
#   source jobs/ray_cluster.sh
#   ray_cluster_init     # nodes and their addresses, port block, private job dir, auth token
#   ray_cluster_start    # head on the first node, workers on the rest; waits until all joined
#   ... python search/run.py --evaluator ray --ray-address "$RAY_CLUSTER_ADDRESS" ...
#   ray_cluster_stop     # idempotent: stops every node's Ray processes of this job
#
# Follows Ray's Slurm template (head from `scontrol show hostnames`, `ray start --block` per node
# through srun, resources from SLURM_* variables) without its fixed sleeps and fixed port.
# Everything is specific to the job, so two jobs sharing a node do not collide: the ports are a
# block derived from SLURM_JOB_ID (moved on when taken), worker ports are random.
#
# Private files (jobs/README.md, "Security model"): the job dir RAY_JOB_DIR is made by
# `mktemp -d` (mode 0700, a fresh name: no planted file or link is followed) under the first of
# RAY_JOB_DIR_BASE, SLURM_TMPDIR, XDG_RUNTIME_DIR (one-node jobs only), TMPDIR, /tmp that exists
# and keeps Ray's unix socket paths under 107 bytes (RAY_TEMP_DIR at most 40 characters). The
# other nodes create the same path with mkdir -m 0700 and refuse it when it exists as a link, a
# non-directory, another user's or with a mode other than 0700. Ray's temp dir is
# RAY_JOB_DIR/ray (Ray makes it and its session dirs 0777; the 0700 parent keeps others out);
# RAY_JOB_DIR/cluster.env (umask 077, mode 0600) holds the address and the auth token for
# `ray status`. Token authentication is on, with a token made for the job and passed to the
# head, the workers and the driver through the environment (RAY_AUTH_MODE=token,
# RAY_AUTH_TOKEN), never on a command line; a RAY_AUTH_MODE set by the user is respected.
#
# Addresses: node i runs Ray on RAY_NODE_IPS[i] (default: the first IPv4 of the node's Slurm
# NodeAddr; RAY_HEAD_IP replaces the first). When every node is on loopback (127.x: a local
# Slurm), all use 127.0.0.1 through jobs/ray_start.py, the only node address for which Ray keeps
# every listener on loopback, and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is exported so that the
# drivers keep it too. Ray's Prometheus exporter per node is off (RAY_enable_metrics_collection=0)
# and the head's dashboard and autoscaler metrics ports are moved into the job's block.
#
# Settings (environment): RAY_PORT (GCS port; default derived from the job id), RAY_HEAD_IP,
# RAY_NODE_IPS (space-separated, one address per node of the job, in `scontrol show hostnames`
# order), RAY_JOB_DIR_BASE (folder for the job dir), RAY_CPUS_PER_NODE / RAY_GPUS_PER_NODE
# (default: SLURM_CPUS_ON_NODE; SLURM_GPUS_ON_NODE, else SLURM_GPUS_PER_NODE, else nvidia-smi's
# count, else 0), RAY_START_TIMEOUT (s, default 300), RAY_STOP_TIMEOUT (s, default 60),
# RAY_SRUN_ARGS (extra srun options for the ray start steps), RAY_START_ARGS (extra `ray start`
# options), RAY_KEEP_TEMP=1 (keep RAY_JOB_DIR/ray: Ray's logs; cluster.env is always removed),
# RAY_STOP_EVERYTHING=1 (also run a plain `ray stop --force` on every node: only for nodes of
# your own, as it stops every Ray cluster of yours there).

RAY_CLUSTER_PIDS=()
RAY_CLUSTER_STARTED=0
RAY_CLUSTER_JOBS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RAY_TEMP_DIR_MAX=40  # + "/session_<date>_<time>_<us>_<pid>/sockets/plasma_store.NN" <= 107

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

# First port of a block of SIZE free ones on this node, starting from the job's own block.
_rc_free_port_block() {
    python - "$1" "$2" <<'PY'
import socket
import sys

start, size = int(sys.argv[1]), int(sys.argv[2])
span = 12000 - size
for attempt in range(200):
    base = 20000 + (start - 20000 + 20 * attempt) % span
    try:
        for port in range(base, base + size):
            with socket.socket() as sock:
                sock.bind(("", port))
    except OSError:
        continue
    print(base)
    break
else:
    sys.exit(f"no free block of {size} ports found")
PY
}

# _rc_private_dir DIR: make DIR (mode 0700) or accept it only when it is already a directory of
# ours with mode 0700 (never a symbolic link). Also run on the other nodes (see _RC_NODE_START).
_rc_private_dir() {
    local dir=$1 mode owner
    if [[ ! -e $dir && ! -L $dir ]]; then
        mkdir -m 0700 -- "$dir" 2>/dev/null || true  # atomic; a racing creator is checked below
    fi
    if [[ -L $dir ]]; then
        echo "ray_cluster: $dir is a symbolic link; refusing to use it" >&2
        return 1
    fi
    if [[ ! -d $dir ]]; then
        echo "ray_cluster: $dir is not a directory (or cannot be created); refusing to use it" >&2
        return 1
    fi
    if [[ ! -O $dir ]]; then
        owner=$(stat -c %U -- "$dir" 2>/dev/null || echo '?')
        echo "ray_cluster: $dir belongs to $owner, not to $(id -un); refusing to use it" >&2
        return 1
    fi
    mode=$(stat -c %a -- "$dir")
    if [[ $mode != 700 ]]; then
        echo "ray_cluster: $dir has mode $mode, not 700; refusing to use it" >&2
        return 1
    fi
}

# The folder the job dir goes into: the first candidate that is a directory, not writable by
# others unless sticky (/tmp), and short enough for Ray's socket paths.
_rc_job_dir_base() {
    local -a candidates=()
    local base mode
    [[ -n ${RAY_JOB_DIR_BASE:-} ]] && candidates+=("$RAY_JOB_DIR_BASE")
    [[ -n ${SLURM_TMPDIR:-} ]] && candidates+=("$SLURM_TMPDIR")
    # A login session's runtime dir: compute nodes other than the first often lack it.
    if [[ -n ${XDG_RUNTIME_DIR:-} && ${#RAY_NODES[@]} -eq 1 && -O ${XDG_RUNTIME_DIR} ]]; then
        candidates+=("$XDG_RUNTIME_DIR")
    fi
    [[ -n ${TMPDIR:-} ]] && candidates+=("$TMPDIR")
    candidates+=(/tmp)
    for base in "${candidates[@]}"; do
        base=${base%/}
        [[ -n $base && -d $base && -w $base ]] || continue
        mode=$(stat -L -c %a -- "$base")
        # group- or world-writable without the sticky bit: others could rename our dir away
        if ((8#$mode & 8#022)) && ! ((8#$mode & 8#1000)); then
            _rc_log "not using $base for the job dir: writable by others without the sticky bit" >&2
            continue
        fi
        if ((${#base} + ${#RAY_JOB_DIR_SUFFIX} > RAY_TEMP_DIR_MAX)); then
            _rc_log "not using $base for the job dir: too long for Ray's socket paths" >&2
            continue
        fi
        echo "$base"
        return 0
    done
    echo "ray_cluster: no folder for the job dir (tried ${candidates[*]}); set RAY_JOB_DIR_BASE" \
        "to a short private folder" >&2
    return 1
}
RAY_JOB_DIR_SUFFIX=/gd-XXXXXX/ray

# The address Ray uses on each node (RAY_NODE_ADDRS, in RAY_NODES order).
_rc_node_addresses() {
    local i node addr ip
    local -A slurm_addr=()
    RAY_NODE_ADDRS=()
    if [[ -n ${RAY_NODE_IPS:-} ]]; then
        read -ra RAY_NODE_ADDRS <<<"$RAY_NODE_IPS"
        if ((${#RAY_NODE_ADDRS[@]} != ${#RAY_NODES[@]})); then
            echo "ray_cluster: RAY_NODE_IPS has ${#RAY_NODE_ADDRS[@]} addresses for" \
                "${#RAY_NODES[@]} nodes (${RAY_NODES[*]})" >&2
            return 1
        fi
    else
        while read -r node addr; do
            slurm_addr[$node]=$addr
        done < <(scontrol show node -o "$SLURM_JOB_NODELIST" 2>/dev/null |
                 sed -n 's/^NodeName=\([^ ]*\) .*NodeAddr=\([^ ]*\).*/\1 \2/p')
        for node in "${RAY_NODES[@]}"; do
            addr=${slurm_addr[$node]:-$node}
            ip=$(getent ahostsv4 "$addr" | awk 'NR == 1 {print $1}')
            [[ -n $ip ]] || ip=$(getent ahostsv4 "$node" | awk 'NR == 1 {print $1}')
            if [[ -z $ip ]]; then
                echo "ray_cluster: cannot resolve $node ($addr); set RAY_NODE_IPS" >&2
                return 1
            fi
            RAY_NODE_ADDRS+=("$ip")
        done
    fi
    [[ -z ${RAY_HEAD_IP:-} ]] || RAY_NODE_ADDRS[0]=$RAY_HEAD_IP
    local loopback=0
    for ip in "${RAY_NODE_ADDRS[@]}"; do
        [[ $ip == 127.* || $ip == localhost ]] && loopback=$((loopback + 1))
    done
    RAY_LOOPBACK=0
    if ((loopback == ${#RAY_NODE_ADDRS[@]})); then
        RAY_LOOPBACK=1
        for i in "${!RAY_NODE_ADDRS[@]}"; do RAY_NODE_ADDRS[i]=127.0.0.1; done
    elif ((loopback > 0)); then
        echo "ray_cluster: some nodes are on loopback and some are not (${RAY_NODE_ADDRS[*]});" \
            "set RAY_NODE_IPS" >&2
        return 1
    fi
    RAY_HEAD_IP=${RAY_NODE_ADDRS[0]}
}

ray_cluster_init() {
    local job=${SLURM_JOB_ID:?not inside a Slurm job} base
    mapfile -t RAY_NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    RAY_HEAD=${RAY_NODES[0]}
    _rc_node_addresses || return 1
    RAY_CPUS_PER_NODE=${RAY_CPUS_PER_NODE:-${SLURM_CPUS_ON_NODE:-$(nproc)}}
    RAY_GPUS_PER_NODE=${RAY_GPUS_PER_NODE:-$(_rc_gpus_per_node)}
    # Ports: head P (GCS), P+1 dashboard (off), P+6 client server, P+7/P+8 dashboard/autoscaler
    # metrics; per node P+10+6k.. (agents, node and object manager; k = node index on one
    # machine, 0 on real nodes).
    RAY_PORT_NODES=1
    ((RAY_LOOPBACK)) && RAY_PORT_NODES=${#RAY_NODES[@]}
    RAY_PORT=${RAY_PORT:-$(_rc_free_port_block $((20000 + (job % 600) * 20)) \
        $((10 + 6 * RAY_PORT_NODES)))}
    RAY_CLUSTER_ADDRESS=$RAY_HEAD_IP:$RAY_PORT
    base=$(_rc_job_dir_base) || return 1
    RAY_JOB_DIR=$(mktemp -d "$base/gd-XXXXXX") || {
        echo "ray_cluster: mktemp -d in $base failed" >&2
        return 1
    }
    _rc_private_dir "$RAY_JOB_DIR" || return 1
    RAY_TEMP_DIR=$RAY_JOB_DIR/ray
    export RAY_CLUSTER_ADDRESS RAY_JOB_DIR RAY_TEMP_DIR
    export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
    if [[ $RAY_AUTH_MODE == token && -z ${RAY_AUTH_TOKEN:-} && -z ${RAY_AUTH_TOKEN_PATH:-} ]]
    then
        RAY_AUTH_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(32))')
        export RAY_AUTH_TOKEN
    fi
    export RAY_USAGE_STATS_ENABLED=0
    export RAY_enable_metrics_collection=${RAY_enable_metrics_collection:-0}
    export DASHBOARD_METRIC_PORT=$((RAY_PORT + 7)) AUTOSCALER_METRIC_PORT=$((RAY_PORT + 8))
    if ((RAY_LOOPBACK)); then
        export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    fi
    # For `ray status` from outside the job (jobs/README.md): address and token, owner-only.
    (
        umask 077
        set -o noclobber
        { declare -p RAY_CLUSTER_ADDRESS RAY_AUTH_MODE RAY_AUTH_TOKEN RAY_AUTH_TOKEN_PATH \
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER 2>/dev/null || true; } |
            sed 's/^declare -[-x]* /export /' >"$RAY_JOB_DIR/cluster.env"
    ) || return 1
    _rc_log "nodes: ${RAY_NODES[*]} (Ray addresses ${RAY_NODE_ADDRS[*]}); head $RAY_HEAD" \
        "($RAY_CLUSTER_ADDRESS); per node $RAY_CPUS_PER_NODE CPUs, $RAY_GPUS_PER_NODE GPUs;" \
        "auth $RAY_AUTH_MODE"
    _rc_log "job dir $RAY_JOB_DIR (mode 0700, on each node; Ray's temp dir $RAY_TEMP_DIR);" \
        "address and token for ray status: source $RAY_JOB_DIR/cluster.env on $RAY_HEAD"
}

# ray start options of node INDEX (ports of this job's block; worker ports random).
_rc_start_args() {
    local index=$1 base
    local -a extra=()
    read -ra extra <<<"${RAY_START_ARGS:-}"
    base=$((RAY_PORT + 10 + 6 * (RAY_LOOPBACK ? index : 0)))
    printf '%s\n' --block --node-ip-address="${RAY_NODE_ADDRS[index]}" \
        --num-cpus="$RAY_CPUS_PER_NODE" --num-gpus="$RAY_GPUS_PER_NODE" \
        --temp-dir="$RAY_TEMP_DIR" --dashboard-agent-listen-port=$((base)) \
        --dashboard-agent-grpc-port=$((base + 1)) --runtime-env-agent-port=$((base + 2)) \
        --metrics-export-port=$((base + 3)) --node-manager-port=$((base + 4)) \
        --object-manager-port=$((base + 5)) --min-worker-port=0 --max-worker-port=0 \
        --disable-usage-stats "${extra[@]}"
}

# Run on each node by srun before `ray start`: its private job dir, then exec the command.
# shellcheck disable=SC2016  # expanded on the node
_RC_NODE_START="$(declare -f _rc_private_dir)"'
_rc_private_dir "$RAY_JOB_DIR" || exit 1
exec "$@"'

# srun of one `ray start --block` on one node, in the background; its PID is recorded.
_rc_srun_ray() {
    local node=$1 log=$2
    shift 2
    local -a srun_extra=() ray=(ray)
    read -ra srun_extra <<<"${RAY_SRUN_ARGS:-}"
    ((RAY_LOOPBACK)) && ray=(python "$RAY_CLUSTER_JOBS_DIR/ray_start.py")
    srun --nodes=1 --ntasks=1 --cpus-per-task="$RAY_CPUS_PER_NODE" -w "$node" \
        --kill-on-bad-exit=0 "${srun_extra[@]}" bash -c "$_RC_NODE_START" ray-node \
        "${ray[@]}" start "$@" >"$log" 2>&1 &
    RAY_CLUSTER_PIDS+=("$!")
}

# Wait until the head answers and every node has joined (polling; fails fast if a node died),
# then list the nodes (host name, address, node id, head or worker).
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
alive = []
while True:
    alive = [node for node in ray.nodes() if node["Alive"]]
    if len(alive) >= want:
        break
    check_alive()
    if time.monotonic() > deadline:
        sys.exit(f"ray_cluster: {len(alive)} of {want} nodes joined after {timeout:.0f} s")
    time.sleep(0.5)
resources = ray.cluster_resources()
print(f"[ray_cluster] ready: {len(alive)} nodes, {resources.get('CPU', 0):g} CPUs, "
      f"{resources.get('GPU', 0):g} GPUs")
for node in sorted(alive, key=lambda n: "node:__internal_head__" not in n["Resources"]):
    role = "head" if "node:__internal_head__" in node["Resources"] else "worker"
    print(f"[ray_cluster] node {node['NodeManagerHostname']} {node['NodeManagerAddress']} "
          f"{role} id {node['NodeID'][:12]} CPUs {node['Resources'].get('CPU', 0):g}")
ray.shutdown()
PY
}

ray_cluster_start() {
    local logs=${RAY_LOG_DIR:-.} node i
    mkdir -p "$logs"
    RAY_CLUSTER_STARTED=1
    _rc_log "starting head on $RAY_HEAD (${RAY_NODE_ADDRS[0]})"
    local -a args=()
    mapfile -t args < <(_rc_start_args 0)
    _rc_srun_ray "$RAY_HEAD" "$logs/ray-$SLURM_JOB_ID-head.log" --head \
        --port="$RAY_PORT" --include-dashboard=false \
        --dashboard-port=$((RAY_PORT + 1)) --ray-client-server-port=$((RAY_PORT + 6)) \
        "${args[@]}"
    for ((i = 1; i < ${#RAY_NODES[@]}; i++)); do
        node=${RAY_NODES[i]}
        mapfile -t args < <(_rc_start_args "$i")
        _rc_log "starting worker on $node (${RAY_NODE_ADDRS[i]})"
        _rc_srun_ray "$node" "$logs/ray-$SLURM_JOB_ID-worker-$i.log" \
            --address="$RAY_CLUSTER_ADDRESS" "${args[@]}"
    done
    ray_cluster_wait
}

# Runs on each node (through srun) to stop it: SIGTERM to the node's `ray start --block` (Ray
# then drains and stops the node's processes; `ray stop` alone would leave that blocking process
# running forever), wait for them, SIGKILL what is left of the processes using this job's temp
# dir, remove the job dir (cluster.env always; Ray's temp dir unless RAY_KEEP_TEMP=1). Only this
# job's processes match: their command lines hold its temp dir, a fresh mktemp name.
# shellcheck disable=SC2016  # expanded on the node
_RC_NODE_STOP='
start="start .*--temp-dir=$RAY_TEMP_RE([[:space:]]|\$)"
all="$RAY_TEMP_RE/session_|$start"
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
if [[ -d $RAY_JOB_DIR && ! -L $RAY_JOB_DIR && -O $RAY_JOB_DIR ]]; then
    rm -f "$RAY_JOB_DIR/cluster.env"
    if [[ $RAY_KEEP_TEMP != 1 ]]; then rm -rf "$RAY_JOB_DIR"; fi
fi
'

# Stop this job's Ray cluster (idempotent): every node at once, then the `ray start` steps.
ray_cluster_stop() {
    ((RAY_CLUSTER_STARTED)) || return 0
    RAY_CLUSTER_STARTED=0
    local pid node i timeout=${RAY_STOP_TIMEOUT:-60}
    local -a stops=()
    # the temp dir as an extended regular expression (pgrep -f)
    RAY_TEMP_RE=$(printf '%s' "$RAY_TEMP_DIR" | sed 's/[][\.*^$+?(){}|]/\\&/g')
    export RAY_TEMP_RE
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
