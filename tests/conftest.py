"""Shared pytest fixtures.

``tiny_domain_pair`` is the cheap, valid source/target benchmark for fast tests (~20 ms to
build): 40 rows of smooth blobs (mergers = two blobs, non-mergers = one), 20 mergers and 20
non-mergers. The mergers are 4 galaxies with 5 augmented copies each (90-degree rotations and
flips), the non-mergers 20 single galaxies. Splits are assigned per galaxy (16/3/5 galaxies,
24/7/9 rows in train/val/test, both classes in every split). The target is the source plus
Gaussian noise (sigma 0.05) with the same labels, ids and splits.

Use it read-only (it is session-scoped)::

    def test_something(tiny_domain_pair):
        bench = load_benchmark(tiny_domain_pair)   # folder with source.h5 and target.h5

``tiny_domain_arrays`` gives fresh in-memory copies (``{"source": DomainData, "target": ...}``)
to corrupt and write in a test's own ``tmp_path``.

``make test`` runs the suite in two processes (pytest-xdist, ``--dist loadfile``: the tests of
a file run in one process, so that its module- and session-scoped fixtures are built once).
:func:`pytest_xdist_make_scheduler` makes the files that start Ray or Slurm
(:data:`CLUSTER_FILES`) one unit that runs first, one test at a time, because their clean-up
checks (no Ray, Slurm or MUNGE process left; ``ray stop`` when no other Ray was running) see
every process of the machine. Run ``pytest -n N`` with ``--dist loadfile`` (as ``make test``
does): xdist's other modes would spread those files over the processes.

Each test process flushes subnormal floats to zero on all its torch threads before its first
test, as every command that trains or applies a network does (:mod:`training.denormals`), so
trials built in-process record and run as they do from the command line (and do not warn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from galaxies.schema import FILTERS, IMAGE_SIZE, SPLITS, DomainData, domain_paths, write_domain

# Before this process's torch threads exist, so every thread inherits it. Not through
# training.denormals.flush_denormals: its check would start the OpenMP threads now, and a
# test that forks a trial worker after that could hang (see that module).
torch.set_flush_denormal(True)

N_MERGER_GALAXIES, N_COPIES, N_SINGLE = 4, 5, 20
MERGER_SPLITS = ("train", "train", "val", "test")  # per merger galaxy
SINGLE_SPLITS = ("train",) * 14 + ("val",) * 2 + ("test",) * 4  # per non-merger galaxy
TARGET_NOISE_SIGMA = 0.05


def _blob(rng: np.random.Generator, grid: np.ndarray, n_blobs: int) -> np.ndarray:
    """One [3, 75, 75] image: ``n_blobs`` Gaussian blobs, brightness varying per channel."""
    image = np.zeros((len(FILTERS), IMAGE_SIZE, IMAGE_SIZE))
    for _ in range(n_blobs):
        cy, cx = rng.uniform(25, 50, size=2)
        width = rng.uniform(3, 8)
        profile = np.exp(-((grid[0] - cy) ** 2 + (grid[1] - cx) ** 2) / (2 * width**2))
        image += rng.uniform(0.5, 2.0, size=(len(FILTERS), 1, 1)) * profile
    return image


def make_tiny_pair(seed: int = 0) -> dict[str, DomainData]:
    """Build the 40-row source/target pair described in the module docstring."""
    rng = np.random.default_rng(seed)
    grid = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(float)
    images, labels, ids, splits = [], [], [], []
    for galaxy, split in enumerate(MERGER_SPLITS):
        base = _blob(rng, grid, n_blobs=2)
        for copy in range(N_COPIES):
            rotated = np.rot90(base, k=copy % 4, axes=(1, 2))
            images.append(rotated[:, :, ::-1] if copy == 4 else rotated)
        labels += [1] * N_COPIES
        ids += [galaxy] * N_COPIES
        splits += [SPLITS[split]] * N_COPIES
    for offset, split in enumerate(SINGLE_SPLITS):
        images.append(_blob(rng, grid, n_blobs=1))
        labels.append(0)
        ids.append(N_MERGER_GALAXIES + offset)
        splits.append(SPLITS[split])
    source_images = np.stack(images).astype(np.float32)
    noise = rng.normal(0.0, TARGET_NOISE_SIGMA, size=source_images.shape).astype(np.float32)
    common = {
        "filters": list(FILTERS),
        "pixel_scale_arcsec": 0.06,
        "psf_fwhm_arcsec": 0.15,
        "generator": "tests/conftest.py",
        "generator_version": "1",
        "seed": seed,
    }
    pair = {}
    for domain, domain_images, noise_text in (
        ("source", source_images, "none (pristine)"),
        ("target", source_images + noise, f"gaussian sigma={TARGET_NOISE_SIGMA}"),
    ):
        pair[domain] = DomainData(
            images=domain_images,
            labels=np.array(labels, dtype=np.uint8),
            galaxy_id=np.array(ids, dtype=np.int64),
            split=np.array(splits, dtype=np.uint8),
            attrs={**common, "domain": domain, "noise": noise_text},
        )
    return pair


#: The files whose tests start Ray or Slurm (markers ``ray``/``slurm``): one xdist group.
CLUSTER_FILES = ("test_jobs_slurm.py", "test_jobs_slurm_two_nodes.py", "test_search_ray.py",
                 "test_seeds.py")
CLUSTER_MARKERS = ("ray", "slurm")
CLUSTER_GROUP = "clusters"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadfile``, with the :data:`CLUSTER_FILES` as one unit, in collection order.

    (xdist's ``loadgroup`` cannot be used: pytest 9 ignores the node ids it rewrites.)
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ClusterFileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return CLUSTER_GROUP if Path(path).name in CLUSTER_FILES else path

    config.option.loadscopereorder = False  # keep the order below: the clusters first
    return ClusterFileScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cluster files first (the longest unit), each file's order kept.

    Raises:
        pytest.UsageError: a ``ray`` or ``slurm`` test outside :data:`CLUSTER_FILES`.
    """
    strays = sorted({item.path.name for item in items
                     if any(item.get_closest_marker(m) for m in CLUSTER_MARKERS)
                     and item.path.name not in CLUSTER_FILES})
    if strays:
        raise pytest.UsageError(f"{strays} start Ray or Slurm: add them to CLUSTER_FILES in "
                                "tests/conftest.py, so that they never run beside another")
    items.sort(key=lambda item: item.path.name not in CLUSTER_FILES)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_domain_arrays() -> dict[str, DomainData]:
    """Fresh in-memory copies of the tiny pair, safe to modify."""
    return make_tiny_pair()


@pytest.fixture(scope="session")
def tiny_domain_pair(tmp_path_factory: pytest.TempPathFactory):
    """Folder holding a valid tiny ``source.h5`` and ``target.h5`` (treat as read-only)."""
    folder = tmp_path_factory.mktemp("tiny_domain_pair")
    paths = domain_paths(folder)
    for domain, data in make_tiny_pair().items():
        write_domain(paths[domain], data)
    return folder


@pytest.fixture(scope="session")
def tiny_trial(tiny_domain_pair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``none_deepmerge`` trial on the tiny pair (1 epoch of 2 batches of 8; treat
    as read-only: copy it to change it)."""
    from training.loop import run_trial
    from training.naming import problem_config

    out = tmp_path_factory.mktemp("tiny_trial") / "none"
    record = run_trial(problem_config("none_deepmerge", ["epochs=1", "batch_size=8",
                                                         "max_batches_per_epoch=2"]),
                       tiny_domain_pair, out, progress=False)
    assert record["status"] == "ok"
    return out
