"""galaxies.datasets: source-train-only statistics, split tensors and lean paired batches."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from galaxies.datasets import (
    ChannelStats,
    PairedBatches,
    channel_stats,
    load_benchmark,
    split_tensors,
)
from galaxies.schema import SPLITS, domain_paths
from galaxies.validate import InvalidDatasetError


@pytest.fixture
def pair_copy(tiny_domain_pair: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "bench"
    shutil.copytree(tiny_domain_pair, folder)
    return folder


def _edit(path: Path, edit) -> None:
    with h5py.File(path, "r+") as h5:
        edit(h5)


def test_load_benchmark(tiny_domain_pair: Path) -> None:
    bench = load_benchmark(tiny_domain_pair)
    assert len(bench.source) == len(bench.target) == 40
    assert bench.data_dir == tiny_domain_pair
    train = bench.source.images[bench.source.split == SPLITS["train"]].astype(np.float64)
    np.testing.assert_allclose(bench.stats.mean, train.mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(bench.stats.std, train.std(axis=(0, 2, 3)), rtol=1e-10)
    assert ChannelStats.from_dict(bench.stats.to_dict()) == bench.stats


def test_stats_use_only_source_train(pair_copy: Path) -> None:
    before = load_benchmark(pair_copy).stats
    paths = domain_paths(pair_copy)

    def bump(split_code: int):
        def edit(h5: h5py.File) -> None:
            images = h5["images"][...]
            images[np.flatnonzero(h5["split"][...] == split_code)[0]] += 100.0
            del h5["images"]
            h5["images"] = images

        return edit

    _edit(paths["target"], bump(SPLITS["train"]))
    _edit(paths["source"], bump(SPLITS["test"]))
    _edit(paths["source"], bump(SPLITS["val"]))
    assert load_benchmark(pair_copy).stats == before
    _edit(paths["source"], bump(SPLITS["train"]))
    assert load_benchmark(pair_copy).stats != before


def test_missing_file_points_to_simulate(pair_copy: Path) -> None:
    domain_paths(pair_copy)["target"].unlink()
    with pytest.raises(InvalidDatasetError, match="galaxies/simulate.py --out"):
        load_benchmark(pair_copy)


def test_domains_must_agree(pair_copy: Path) -> None:
    paths = domain_paths(pair_copy)
    _edit(paths["target"], lambda h5: h5.attrs.__setitem__("domain", "source"))
    with pytest.raises(InvalidDatasetError, match="expected 'target'"):
        load_benchmark(pair_copy)


def test_invalid_file_is_rejected(pair_copy: Path) -> None:
    _edit(domain_paths(pair_copy)["source"], lambda h5: h5.attrs.__delitem__("seed"))
    with pytest.raises(InvalidDatasetError, match="missing required attributes"):
        load_benchmark(pair_copy)


def test_split_tensors_normalise(tiny_domain_pair: Path) -> None:
    bench = load_benchmark(tiny_domain_pair)
    x, y = split_tensors(bench.source, "train", bench.stats)
    assert x.shape == (24, 3, 75, 75) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == [1] * 10 + [0] * 14
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4)
    xt, _ = split_tensors(bench.target, "test", bench.stats)
    assert xt.shape == (9, 3, 75, 75)
    assert bench.source.images.dtype == np.float32  # the source arrays are not modified
    raw = bench.source.images[bench.source.split == 0]
    expected = (raw[0, 1] - bench.stats.mean[1]) / bench.stats.std[1]
    np.testing.assert_allclose(x[0, 1].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_channel_stats_rejects_constant_channel() -> None:
    images = np.ones((4, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="constant"):
        channel_stats(images)


def _batches(seed: int, n_source=10, n_target=4, batch_size=4, max_batches=None):
    xs = torch.arange(n_source, dtype=torch.float32)[:, None]
    ys = torch.arange(n_source)
    xt = 100 + torch.arange(n_target, dtype=torch.float32)[:, None]
    generator = torch.Generator().manual_seed(seed)
    return PairedBatches(xs, ys, xt, batch_size, generator, max_batches=max_batches)


def test_paired_batches_cover_source_once_and_cycle_target() -> None:
    batches = _batches(seed=0)
    assert len(batches) == 3
    target_stream = []
    for _ in range(2):  # two epochs
        epoch = list(batches)
        assert [len(xs) for xs, _, _ in epoch] == [4, 4, 2]
        assert all(len(xt) == len(xs) for xs, _, xt in epoch)
        seen = torch.cat([ys for _, ys, _ in epoch])
        assert sorted(seen.tolist()) == list(range(10))
        assert all(torch.equal(xs[:, 0].long(), ys) for xs, ys, _ in epoch)
        target_stream += [int(v) - 100 for _, _, xt in epoch for v in xt[:, 0]]
    # the target rows form back-to-back permutations of the 4 target images, across epochs
    assert len(target_stream) == 20
    for start in range(0, 20, 4):
        assert sorted(target_stream[start : start + 4]) == [0, 1, 2, 3]


def test_paired_batches_target_larger_than_batch_pool() -> None:
    batches = _batches(seed=0, n_source=12, n_target=3, batch_size=6)
    xs, ys, xt = next(iter(batches))
    assert xs.shape == (6, 1) and xt.shape == (6, 1)
    assert sorted((xt[:, 0] - 100).long().tolist()) == [0, 0, 1, 1, 2, 2]


def test_paired_batches_deterministic_and_seed_dependent() -> None:
    def flat(batches):
        return [t.tolist() for batch in batches for t in batch]

    assert flat(_batches(seed=3)) == flat(_batches(seed=3))
    assert flat(_batches(seed=3)) != flat(_batches(seed=4))


def test_paired_batches_max_batches() -> None:
    assert len(_batches(seed=0, max_batches=2)) == 2
    assert len(list(_batches(seed=0, max_batches=2))) == 2
    assert len(_batches(seed=0, max_batches=50)) == 3
    assert len(_batches(seed=0, max_batches=0)) == 3


def test_paired_batches_never_see_target_labels() -> None:
    params = inspect.signature(PairedBatches).parameters
    assert "target_y" not in params
    assert list(params)[:3] == ["source_x", "source_y", "target_x"]


def test_paired_batches_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        PairedBatches(torch.zeros(3, 1), torch.zeros(2), torch.zeros(3, 1), 2, torch.Generator())
    with pytest.raises(ValueError, match="batch_size"):
        PairedBatches(torch.zeros(3, 1), torch.zeros(3), torch.zeros(3, 1), 0, torch.Generator())


def test_paired_batches_without_target_gathers_none():
    import torch

    from galaxies.datasets import PairedBatches

    xs, ys = torch.arange(10.0).reshape(10, 1), torch.zeros(10, dtype=torch.long)
    batches = list(PairedBatches(xs, ys, None, 4, torch.Generator().manual_seed(0)))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert all(b[2] is None for b in batches)
    assert sorted(torch.cat([b[0] for b in batches]).flatten().tolist()) == xs.flatten().tolist()
