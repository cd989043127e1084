"""Evaluator registry: ``serial``, ``process`` (laptop default) and ``ray`` (cluster).

- ``serial``: DeepHyper's ``thread`` evaluator with one worker (DeepHyper's own ``serial``
  needs a coroutine run function); trials run in the driver process.
- ``process``: ``ProcessPoolEvaluator`` with ``workers`` processes; each trial sets
  ``torch.set_num_threads(cpu_count // workers)``.
- ``ray``: ``RayEvaluator``. With ``ray_address`` it joins that cluster; without, it starts a
  private local one (``ray.init(address="local", num_cpus=workers)``; never a bare
  ``ray.init()``, which would attach to any cluster running on the machine). Each trial asks
  Ray for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs.

Ray pitfalls handled here:

- Token authentication: ``ray start --head`` turns token auth on when ``~/.ray/auth_token``
  exists and ``RAY_AUTH_MODE`` is unset, but a driver that connects *by address* does not.
  :func:`configure_ray_auth` mirrors the head's rule (``RAY_AUTH_MODE=token`` when the token
  file exists and the variable is unset); an explicit ``RAY_AUTH_MODE`` is always respected.
- DeepHyper's ``RayStorage`` names its actor ``"0"``, ``"1"``... from a per-process counter, so
  a second driver on the same cluster dies with ``ActorAlreadyExistsError``. We pass a
  ``RayStorage`` whose actor name is unique (host, pid, random suffix).
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

from deephyper.evaluator import Evaluator

from search.run_function import run_trial_job, set_pdeathsig

EVALUATORS = ("serial", "process", "ray")


def torch_threads_per_trial(evaluator: str, workers: int, cpus_per_trial: float = 1) -> int:
    """CPU threads each trial may use so that workers do not oversubscribe the cores."""
    cores = os.cpu_count() or 1
    if evaluator == "serial":
        return cores
    if evaluator == "ray":
        return max(1, int(cpus_per_trial))
    return max(1, cores // max(1, workers))


def configure_ray_auth() -> str | None:
    """Make the driver use token auth exactly when ``ray start`` on this machine would.

    Returns:
        The ``RAY_AUTH_MODE`` now in effect (``None`` when unset).
    """
    if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        # Ray caches its config when it is imported (DeepHyper imports it early): refresh it,
        # as Ray's own ``_enable_token_auth`` does, or this process keeps auth disabled.
        from ray._raylet import Config

        Config.initialize("")
    return os.environ.get("RAY_AUTH_MODE")


def unique_ray_storage(address: str | None) -> Any:
    """A ``RayStorage`` whose actor name cannot clash with another driver's."""
    from deephyper.evaluator.storage import RayStorage

    storage = RayStorage(address=address or "auto")
    storage.actor_name = f"galaxy-da-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return storage


def connect_ray(address: str | None, workers: int, quiet: bool = False) -> None:
    """Join the cluster at ``address`` or start a private local one with ``workers`` CPUs."""
    import ray

    if ray.is_initialized():
        return
    if address:
        # Only a driver joining an existing cluster mirrors the head's token rule; a private
        # local cluster is started by this very process, which then agrees with itself.
        configure_ray_auth()
        ray.init(address=address, log_to_driver=not quiet)
    else:
        ray.init(address="local", num_cpus=workers, include_dashboard=False,
                 log_to_driver=not quiet)


def process_storage() -> Any:
    """DeepHyper's ``SharedMemoryStorage`` whose manager process dies with the driver."""
    from deephyper.evaluator.storage._shared_memory_storage import BaseManager

    manager = BaseManager()
    manager.start(initializer=set_pdeathsig)
    return manager.MemoryStorage()  # the proxy keeps a reference to its manager


def create_evaluator(
    name: str,
    context: dict[str, Any],
    workers: int,
    ray_address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    callbacks: list | None = None,
    quiet: bool = False,
) -> Evaluator:
    """Build the evaluator called ``name`` around :func:`search.run_function.run_trial_job`.

    Args:
        name: ``serial``, ``process`` or ``ray``.
        context: the run function's context (see :mod:`search.run_function`).
        workers: number of trials run at once.
        ray_address: existing Ray cluster (``ray``); ``None`` starts a local one.
        cpus_per_trial: Ray CPUs reserved per trial.
        gpus_per_trial: Ray GPUs reserved per trial (fractions share a GPU).
        callbacks: DeepHyper evaluator callbacks.
        quiet: keep Ray's worker logs off the driver's output.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones).
    """
    callbacks = list(callbacks or [])
    kwargs = {"run_function_kwargs": {"context": context}, "callbacks": callbacks}
    if name == "serial":
        return Evaluator.create(run_trial_job, method="thread",
                                method_kwargs={**kwargs, "num_workers": 1})
    if name == "process":
        return Evaluator.create(run_trial_job, method="process",
                                method_kwargs={**kwargs, "num_workers": workers,
                                               "storage": process_storage()})
    if name == "ray":
        connect_ray(ray_address, workers, quiet=quiet)
        from deephyper.evaluator import RayEvaluator

        return RayEvaluator(
            run_trial_job, storage=unique_ray_storage(ray_address), num_workers=workers,
            num_cpus_per_task=cpus_per_trial, num_gpus_per_task=gpus_per_trial, **kwargs,
        )
    raise ValueError(f"unknown evaluator {name!r}; valid evaluators: {', '.join(EVALUATORS)}")


def shutdown(name: str) -> None:
    """Disconnect from (or stop the private) Ray cluster after a ``ray`` search."""
    if name == "ray":
        import ray

        if ray.is_initialized():
            ray.shutdown()
