"""The one trial runner: DeepHyper's run function and evaluators, for searches and seed studies.

``run_trial_job(job, context)`` is the run function DeepHyper calls once per trial (importable
at module level): it turns ``{**defaults, **context.fixed, **job.parameters}`` into a
``TrainConfig``, trains through ``training.loop.run_trial`` into the trial's folder and
returns DeepHyper's contract::

    {"objective": float, "metadata": {status, failure, accuracies, diagnostics, record, ...}}
    {"objective": "F_<reason>", "metadata": {...same keys...}}   # a failed trial

It never raises: a non-finite loss, running out of memory, an invalid configuration, unreadable
data or any other exception become the typed reasons of :class:`training.record.Failure`, set
where they happen, and a failure record (same keys as any record) is written when
``run_trial`` could not write one. DeepHyper crashes the whole search on an exception in the
run function, so this matters.

Evaluators (``EVALUATORS``):

- ``serial``: DeepHyper's ``thread`` evaluator with one worker (its own ``serial`` needs a
  coroutine run function); trials run in the driver process.
- ``process``: ``ProcessPoolEvaluator`` with ``workers`` processes, each killed when the
  driver dies (a ``kill -9`` of the driver leaves no orphan trials running).
- ``ray``: ``RayEvaluator``. With ``ray_address`` it joins that cluster; without, it starts a
  private local one (``ray.init(address="local", num_cpus=workers)``; never a bare
  ``ray.init()``, which would attach to any cluster running on the machine). Each trial asks
  Ray for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs.

A search asks DeepHyper's optimiser for configurations (:mod:`search.run`); a seed study hands
the same evaluator a list of them (:func:`run_configurations`).

Ray pitfalls handled here:

- Token authentication: ``ray start --head`` turns token auth on when ``~/.ray/auth_token``
  exists and ``RAY_AUTH_MODE`` is unset, but a driver that connects *by address* does not.
  :func:`configure_ray_auth` mirrors the head's rule; an explicit ``RAY_AUTH_MODE`` is always
  respected.
- DeepHyper's ``RayStorage`` names its actor ``"0"``, ``"1"``... from a per-process counter, so
  a second driver on the same cluster dies with ``ActorAlreadyExistsError``. We pass a
  ``RayStorage`` whose actor name is unique (host, pid, random suffix).
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.objectives import DEFAULT_OBJECTIVE, diagnostics_read, objective_value
from training.label_free import diagnostic_names
from training.record import Failure, failure_record, write_json

EVALUATORS = ("serial", "process", "ray")


def metadata_keys() -> tuple[str, ...]:
    """The metadata of every trial (the ``m:`` columns of ``results.csv``), in column order.

    Status and failure, the four split accuracies, every label-free diagnostic of the record
    (:func:`training.label_free.diagnostic_names`), best epoch, epochs run, wall time and the
    record's path.
    """
    return ("status", "failure", "source_val_accuracy", "target_val_accuracy",
            "source_test_accuracy", "target_test_accuracy", *diagnostic_names(), "best_epoch",
            "epochs_run", "wall_time_s", "record")


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one search or seed study shares (passed to each run function call).

    Attributes:
        problem: ``<method>_<backbone>``.
        data_dir: absolute folder with ``source.h5`` and ``target.h5``.
        root: absolute folder of the run (the search's log dir, or the seed study's folder).
        trial_dir_pattern: trial folder under ``root``, formatted with ``job_id`` and ``seed``
            (``trials/{job_id}`` for a search, ``seed_{seed}`` for a seed study).
        objective: the objective of :mod:`search.objectives` returned to DeepHyper.
        fixed: values that are not searched (``--set``, or a seed study's configuration).
        torch_threads: CPU threads of each trial.
        die_with_driver: in a process-pool worker, be killed when the driver dies.
    """

    problem: str
    data_dir: str
    root: str
    trial_dir_pattern: str = "trials/{job_id}"
    objective: str = DEFAULT_OBJECTIVE
    fixed: Mapping[str, Any] = field(default_factory=dict)
    torch_threads: int = 1
    die_with_driver: bool = False

    def trial_dir(self, job_id: int, config: Mapping[str, Any]) -> Path:
        """The folder of trial ``job_id`` with configuration ``config``."""
        return Path(self.root) / self.trial_dir_pattern.format(job_id=job_id,
                                                               seed=config.get("seed"))

    def relative(self, path: Path) -> str:
        """``path`` relative to the run's folder (what ``results.csv`` stores)."""
        return str(Path(path).relative_to(self.root))


def to_python(value: Any) -> Any:
    """NumPy/pandas scalars (as DeepHyper samples them) -> plain Python scalars."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def coerce_like(value: Any, default: Any) -> Any:
    """Give ``value`` the Python type of the field's default (int <-> float where exact)."""
    value = to_python(value)
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def merge_config(defaults: Mapping[str, Any], fixed: Mapping[str, Any],
                 sampled: Mapping[str, Any]) -> dict[str, Any]:
    """``{**defaults, **fixed, **sampled}`` with values coerced to the defaults' types."""
    merged = dict(defaults)
    for key, value in {**fixed, **sampled}.items():
        merged[key] = coerce_like(value, defaults.get(key))
    return merged


def _metrics_metadata(record: dict[str, Any]) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    diagnostics = record.get("diagnostics") or {}

    def acc(split: str) -> float | None:
        return (metrics.get(split) or {}).get("accuracy")

    return {
        "source_val_accuracy": acc("source_val"), "target_val_accuracy": acc("target_val"),
        "source_test_accuracy": acc("source_test"), "target_test_accuracy": acc("target_test"),
        **{key: diagnostics.get(key) for key in diagnostic_names()},
        "best_epoch": record.get("best_epoch"), "epochs_run": record.get("epochs_run"),
        "wall_time_s": record.get("wall_time_s"),
    }


class EpochReporter:
    """Reports the search's objective after every epoch to DeepHyper's stopper.

    ``job.record(epoch, objective)`` with the objective of the current weights on the
    validation splits (label-free unless the search's objective is the oracle), then
    ``job.stopped()``. Only used when the search has a stopper (the validation pass costs
    time).
    """

    def __init__(self, job: Any, objective: str):
        self.job, self.objective = job, objective
        self.last: float | None = None
        self.observed: list[tuple[int, float | str]] = []

    def __call__(self, epoch: int, interim: Any) -> bool:
        """Record ``(epoch, objective)``; True when the stopper ends the trial."""
        value = objective_value(self.objective, interim(diagnostics_read(self.objective)))
        self.last = value
        self.observed.append((epoch, value if value is not None else str(Failure.NAN_OBJECTIVE)))
        self.job.record(*self.observed[-1])
        return bool(self.job.stopped())

    def state_dict(self) -> dict[str, Any]:
        """What a resumed trial needs (saved in its ``resume.pt`` by ``run_trial``)."""
        return {"last": self.last, "observed": list(self.observed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a resumed trial: replay its recorded objectives to the new stopper.

        The stopper of the resumed search rebuilds its state (rungs, observations) from them;
        its answers for those epochs are not acted on (the trial went on past them).
        """
        self.last = state.get("last")
        for epoch, value in state.get("observed", []):
            self.observed.append((int(epoch), value))
            self.job.record(int(epoch), value)
            self.job.stopped()


def set_pdeathsig() -> None:
    """Linux: have this process SIGKILLed when its parent dies (no-op elsewhere)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def die_with_driver() -> None:
    """In a process-pool worker: die with the driver, so a killed driver leaves no orphan.

    The worker also leaves interrupts to the driver: it ignores SIGINT (a Ctrl-C reaches every
    process of the terminal's group; the driver stops the search and kills its workers) and
    dies silently on SIGTERM (the default action, no Python traceback), whatever handlers it
    inherited from the driver when it was forked.
    """
    import multiprocessing
    import signal

    if multiprocessing.parent_process() is not None:
        set_pdeathsig()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _failed(failure: Failure | str, metadata: dict[str, Any]) -> dict[str, Any]:
    reason = str(failure)
    return {"objective": reason, "metadata": {**metadata, "status": "failed", "failure": reason}}


class _StopError(Exception):
    """A failure detected before training, with its typed reason."""

    def __init__(self, failure: Failure, error: str, tb: str | None = None):
        super().__init__(error)
        self.failure, self.error, self.tb = failure, error, tb


def _classify(exc: Exception) -> tuple[Failure, str, str | None]:
    """The typed reason, error text and traceback of an exception raised by a trial."""
    if isinstance(exc, _StopError):
        return exc.failure, exc.error, exc.tb
    failure = Failure.OOM if isinstance(exc, MemoryError) else Failure.ERROR
    return failure, f"{type(exc).__name__}: {exc}", traceback.format_exc()


def run_trial_job(job: Any, context: TrialContext) -> dict[str, Any]:
    """Train one configuration; return ``{"objective", "metadata"}`` (never raises).

    The trial trains in ``context.trial_dir(job id)``; when that folder holds the
    ``resume.pt`` of the same configuration (an interrupted trial that a resumed search runs
    again under its own job id), ``run_trial`` continues after its last completed epoch.

    Args:
        job: DeepHyper's ``RunningJob`` (``job.parameters``: the sampled values; ``job["job_id"]``).
        context: see :class:`TrialContext`.

    Returns:
        ``{"objective": float | "F_<reason>", "metadata": {...}}`` with the same metadata keys
        for successes and failures (so DeepHyper's ``results.csv`` keeps one set of columns).
    """
    start = time.perf_counter()
    config: dict[str, Any] = {**context.fixed, **dict(job.parameters)}
    out_dir = context.trial_dir(int(job["job_id"]), config)
    metadata: dict[str, Any] = dict.fromkeys(metadata_keys())
    metadata["record"] = context.relative(out_dir / "record.json")
    try:
        import torch

        from galaxies.validate import InvalidDatasetError
        from problems import get_problem
        from training.config import TrainConfig
        from training.denormals import flush_denormals
        from training.loop import run_trial

        flush_denormals()  # before the thread pool exists, so that every thread flushes
        torch.set_num_threads(max(1, int(context.torch_threads)))
        if context.die_with_driver:
            die_with_driver()
        defaults = get_problem(context.problem).defaults.to_dict()
        config = merge_config(defaults, context.fixed, dict(job.parameters))
        out_dir = context.trial_dir(int(job["job_id"]), config)
        metadata["record"] = context.relative(out_dir / "record.json")
        try:
            train_config = TrainConfig.from_dict(config)
        except (KeyError, TypeError, ValueError) as exc:
            raise _StopError(Failure.INVALID_CONFIG, f"{type(exc).__name__}: {exc}") from exc
        reporter = (EpochReporter(job, context.objective)
                    if getattr(job, "stopper", None) is not None else None)
        try:
            record = run_trial(train_config, context.data_dir, out_dir,
                               problem=context.problem, progress=False, on_epoch=reporter)
        except InvalidDatasetError as exc:
            raise _StopError(Failure.INVALID_DATA, f"InvalidDatasetError: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - DeepHyper must never see an exception
        failure, error, tb = _classify(exc)
        wall = time.perf_counter() - start
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(out_dir / "record.json", failure_record(
                context.problem, config, failure, error, tb, wall, context.data_dir))
        except OSError:
            metadata["record"] = ""
        metadata["wall_time_s"] = wall
        return _failed(failure, metadata)
    if record.get("status") == "stopped":
        metadata.update(_metrics_metadata(record))
        # The stopper compared trials at equal budgets: return what it saw at the last epoch.
        if reporter.last is None or not math.isfinite(reporter.last):
            return _failed(Failure.NAN_OBJECTIVE, metadata)
        metadata.update(status="stopped", failure="")
        return {"objective": float(reporter.last), "metadata": metadata}
    return record_outcome(record, context.objective, metadata["record"])


def record_outcome(record: Mapping[str, Any], objective: str, record_path: str) -> dict[str, Any]:
    """What the run function returns for a finished (``ok`` or ``failed``) trial's record.

    Also how a resumed search rebuilds the ``results.csv`` row of a trial whose record was
    written but whose row was not (:func:`search.logdir.plan_repair`).

    Args:
        record: the trial's ``record.json``.
        objective: the search's objective (:mod:`search.objectives`).
        record_path: the record's path relative to the run's folder (``metadata["record"]``).

    Returns:
        ``{"objective": float | "F_<reason>", "metadata": {metadata_keys()...}}``.
    """
    metadata: dict[str, Any] = dict.fromkeys(metadata_keys())
    metadata["record"] = record_path
    metadata.update(_metrics_metadata(record))
    if record.get("status") != "ok":
        return _failed(record.get("failure") or Failure.ERROR, metadata)
    value = objective_value(objective, dict(record))
    if value is None or not math.isfinite(value):
        return _failed(Failure.NAN_OBJECTIVE, metadata)
    metadata.update(status="ok", failure="")
    return {"objective": float(value), "metadata": metadata}


def check_data(data_dir: str | os.PathLike) -> None:
    """Validate a data folder once, before any trial, exactly as every trial would load it.

    Searches and seed studies call it first, so that bad data is one clear error instead of
    every trial failing with ``F_invalid_data``.

    Raises:
        galaxies.validate.InvalidDatasetError: a file is missing, breaks the schema, or the
            two domains disagree (one line naming the file and the fix).
    """
    from galaxies.datasets import load_benchmark

    load_benchmark(data_dir)  # the arrays are dropped at once


def usable_cores() -> int:
    """CPUs this process may use.

    Its CPU affinity (a Slurm task's CPUs), capped by ``$OMP_NUM_THREADS`` when that is set.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(omp))) if omp.isdigit() and int(omp) > 0 else max(1, cores)


def torch_threads_per_trial(evaluator: str, workers: int, cpus_per_trial: float = 1) -> int:
    """CPU threads each trial may use so that workers do not oversubscribe the cores."""
    cores = usable_cores()
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


@dataclass(frozen=True)
class Resources:
    """Where trials run: evaluator name, trials at once and what each reserves on Ray.

    Attributes:
        evaluator: ``serial``, ``process`` or ``ray``.
        workers: trials at once (``None``: 2 for ``process``, all cluster CPUs for ``ray``).
        ray_address: existing Ray cluster (``ray``); ``None`` starts a private local one.
        cpus_per_trial: Ray CPUs reserved per trial (also its torch threads).
        gpus_per_trial: Ray GPUs reserved per trial (fractions share a GPU).
    """

    evaluator: str = "process"
    workers: int | None = None
    ray_address: str | None = None
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0

    @property
    def n_workers(self) -> int | None:
        """Trials at once (``None``: Ray decides)."""
        return self.workers or (2 if self.evaluator == "process" else None)

    def torch_threads(self) -> int:
        """CPU threads of each trial."""
        return torch_threads_per_trial(self.evaluator, self.n_workers or 1, self.cpus_per_trial)


def create_evaluator(context: TrialContext, resources: Resources, callbacks: list | None = None,
                     quiet: bool = False) -> Any:
    """The DeepHyper evaluator of ``resources`` around :func:`run_trial_job`.

    Raises:
        ValueError: unknown evaluator name (the message lists the valid ones).
    """
    from deephyper.evaluator import Evaluator

    from search.deephyper_adapter import process_storage

    kwargs = {"run_function_kwargs": {"context": context}, "callbacks": list(callbacks or [])}
    name, workers = resources.evaluator, resources.n_workers
    if name == "serial":
        return Evaluator.create(run_trial_job, method="thread",
                                method_kwargs={**kwargs, "num_workers": 1})
    if name == "process":
        return Evaluator.create(run_trial_job, method="process",
                                method_kwargs={**kwargs, "num_workers": workers,
                                               "storage": process_storage(set_pdeathsig)})
    if name == "ray":
        connect_ray(resources.ray_address, workers, quiet=quiet)
        from deephyper.evaluator import RayEvaluator

        return RayEvaluator(
            run_trial_job, storage=unique_ray_storage(resources.ray_address),
            num_workers=workers, num_cpus_per_task=resources.cpus_per_trial,
            num_gpus_per_task=resources.gpus_per_trial, **kwargs,
        )
    raise ValueError(f"unknown evaluator {name!r}; valid evaluators: {', '.join(EVALUATORS)}")


def shutdown(name: str) -> None:
    """Disconnect from (or stop the private) Ray cluster after a ``ray`` run."""
    if name == "ray":
        import ray

        if ray.is_initialized():
            ray.shutdown()


def run_configurations(context: TrialContext, configurations: list[dict[str, Any]],
                       resources: Resources, quiet: bool = False) -> list[dict[str, Any]]:
    """Run given configurations (e.g. the seeds of a seed study) on the evaluator; wait for all.

    Returns:
        One ``{"parameters", "objective", "metadata"}`` per configuration, in input order.
    """
    from tqdm.auto import tqdm

    evaluator = create_evaluator(context, resources, quiet=quiet)
    jobs: list[Any] = []
    try:
        evaluator.submit(configurations)
        with tqdm(total=len(configurations), desc=context.problem, unit="trial",
                  disable=quiet) as bar:
            while len(jobs) < len(configurations):
                done = evaluator.gather("BATCH", size=1)
                done = [*done[0], *done[1]] if isinstance(done, tuple) else done
                jobs.extend(done)
                bar.update(len(done))
    finally:
        shutdown(resources.evaluator)
    by_args = {repr(sorted(job.args.items())): job for job in jobs}
    out = []
    for configuration in configurations:
        job = by_args[repr(sorted(configuration.items()))]
        output = job.output if isinstance(job.output, dict) else {"objective": job.output}
        metadata = {**(job.metadata or {}), **(output.get("metadata") or {})}
        out.append({"parameters": configuration, "objective": output.get("objective"),
                    "metadata": metadata})
    return out
