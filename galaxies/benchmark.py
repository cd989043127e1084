"""The embedded benchmark: where it lives, and simulating it once on first use.

``ensure_benchmark`` is safe to call from several processes at once: they serialise on an
exclusive ``fcntl.flock`` of a lock file next to the data folder, so only the first one
simulates and the others reuse its (validated) files.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from galaxies.schema import domain_paths
from galaxies.simulate import GENERATOR_VERSION, simulate

DATA_ENV = "GALAXY_DA_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """``$GALAXY_DA_DATA`` if set, else ``<repo>/data/benchmark-v<generator_version>-seed1``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return REPO_ROOT / "data" / f"benchmark-v{GENERATOR_VERSION}-seed1"


def _is_valid(data_dir: Path) -> bool:
    """Both domain files exist and ``galaxies.validate.validate_pair`` accepts them."""
    from galaxies.validate import validate_pair

    if not all(path.is_file() for path in domain_paths(data_dir).values()):
        return False
    try:
        validate_pair(data_dir)
    except ValueError:  # InvalidDatasetError is a ValueError
        return False
    return True


def ensure_benchmark(data_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Return a folder holding a valid benchmark, simulating it with the defaults if needed.

    Args:
        data_dir: the folder; ``None`` = ``default_data_dir()``.
        progress: show the simulation's progress bars.

    Returns:
        The folder, with ``source.h5`` and ``target.h5``.

    Raises:
        galaxies.validate.InvalidDatasetError: if freshly simulated files fail validation.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir.parent / f".{data_dir.name}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _is_valid(data_dir):
                simulate(data_dir, progress=progress)  # validates the pair before replacing
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return data_dir
