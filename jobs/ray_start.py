"""``ray start`` that keeps ``--node-ip-address=127.0.0.1`` (used by ``jobs/ray_cluster.sh``).

    python jobs/ray_start.py start --node-ip-address=127.0.0.1 [other ray start options]

Ray's CLI replaces a node address of ``127.0.0.1`` (or ``localhost``) by the machine's outward
address, and Ray binds its gRPC servers (GCS, raylet, object manager, workers, dashboard agent)
and its Prometheus metrics servers to every interface unless the node address is exactly
``127.0.0.1``. ``jobs/ray_cluster.sh`` runs a cluster whose nodes are all on this machine (a
local Slurm, CI) through this wrapper, so that every Ray listener stays on loopback. The drivers
of such a cluster get ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (exported by ``ray_cluster.sh``),
which keeps ``127.0.0.1`` as their address too; this wrapper turns multi-node back on for itself,
so a worker node may still join. Everything else is Ray's own ``ray`` command.
"""

from __future__ import annotations

import sys

import ray._private.ray_constants as ray_constants
import ray._private.services as services
from ray.scripts.scripts import main

if not (hasattr(services, "resolve_ip_for_localhost")
        and hasattr(ray_constants, "ENABLE_RAY_CLUSTER")):
    sys.exit("jobs/ray_start.py: this Ray version has no services.resolve_ip_for_localhost or "
             "ray_constants.ENABLE_RAY_CLUSTER; run the cluster on a non-loopback address "
             "(RAY_NODE_IPS) or update the wrapper")
services.resolve_ip_for_localhost = lambda host: host
ray_constants.ENABLE_RAY_CLUSTER = True
sys.argv[0] = "ray"
sys.exit(main())
