#!/usr/bin/env bash
# Install Debian's Slurm (slurm-wlm) and MUNGE for the local test Slurm (jobs/slurm-local).
#
#   sudo jobs/slurm-local/install.sh        # idempotent: does nothing when already installed
#
# Needs root (or sudo) and apt (Debian 12 ships slurm-wlm 22.05 and munge 0.5.15). The packages'
# services are not enabled or started here: start.sh runs the daemons itself, without systemd.
set -euo pipefail

missing() {
    local cmd
    for cmd in slurmctld slurmd slurmstepd sbatch srun scontrol sinfo squeue munged munge; do
        command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$cmd" \
            >/dev/null 2>&1 || { echo "$cmd"; return 0; }
    done
}

if [[ -z "$(missing)" ]]; then
    echo "slurm-local: slurm-wlm and munge already installed"
    exit 0
fi

SUDO=()
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "slurm-local: install.sh must run as root (or with sudo available)" >&2
        exit 1
    }
    SUDO=(sudo)
fi
command -v apt-get >/dev/null 2>&1 || {
    echo "slurm-local: apt-get not found; install Slurm (slurmctld, slurmd, clients) and MUNGE" \
        "with your package manager" >&2
    exit 1
}

echo "slurm-local: installing slurm-wlm and munge with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq; then
    echo "slurm-local: 'apt-get update' failed: Debian's package registry cannot be reached," \
        "and Slurm is not installed (missing: $(missing))" >&2
    exit 1
fi
# policy-rc.d exit 101 keeps the packages' init scripts from starting daemons during install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    created_policy=1
fi
status=0
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends slurm-wlm munge || status=$?
if [[ $created_policy -eq 1 ]]; then
    "${SUDO[@]}" rm -f "$policy"
fi
if [[ $status -ne 0 || -n "$(missing)" ]]; then
    echo "slurm-local: installing slurm-wlm and munge failed (missing: $(missing))" >&2
    exit 1
fi
echo "slurm-local: installed $(PATH="$PATH:/usr/sbin" slurmctld -V)"
