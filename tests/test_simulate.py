"""Tests of the GalSim benchmark simulator (tiny sets, CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from galaxies import morphology
from galaxies.schema import DATASET_DTYPES, IMAGE_SHAPE, SPLITS, load_domain_arrays
from galaxies.simulate import AUGMENTATIONS, noise_sigma, simulate

REPO = Path(__file__).resolve().parents[1]
N_MERGERS, N_NONMERGERS = 20, 15


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    paths = simulate(out, N_MERGERS, N_NONMERGERS, seed=5, workers=1, progress=False)
    return {name: load_domain_arrays(path) for name, path in paths.items()}


def test_schema_dtypes_shapes_and_attrs(tiny):
    for domain, data in tiny.items():
        n = N_MERGERS + N_NONMERGERS
        assert data.images.shape == (n, *IMAGE_SHAPE)
        for name, dtype in DATASET_DTYPES.items():
            assert getattr(data, name).dtype == dtype
        assert int(data.labels.sum()) == N_MERGERS
        assert np.isfinite(data.images).all()
        assert data.attrs["domain"] == domain
        assert data.attrs["generator"] == "galaxies.simulate"
        assert len(data.attrs["psf_fwhm_arcsec"]) == 3
        assert data.attrs["seed"] == 5


def test_each_galaxy_in_one_split_every_split_populated(tiny):
    data = tiny["source"]
    for gid in np.unique(data.galaxy_id):
        rows = data.galaxy_id == gid
        assert len(np.unique(data.split[rows])) == 1
        assert len(np.unique(data.labels[rows])) == 1
    for label in (0, 1):
        assert set(np.unique(data.split[data.labels == label])) == set(SPLITS.values())
    assert np.array_equal(tiny["target"].split, data.split)
    assert np.array_equal(tiny["target"].galaxy_id, data.galaxy_id)


def test_augmented_copies_are_flips_and_rotations(tiny):
    data = tiny["source"]
    mergers = np.unique(data.galaxy_id[data.labels == 1])
    assert len(mergers) == N_MERGERS // len(AUGMENTATIONS)
    for gid in mergers:
        orig, ud, lr, r90, r180 = data.images[data.galaxy_id == gid]
        assert np.array_equal(ud, orig[:, ::-1, :])
        assert np.array_equal(lr, orig[:, :, ::-1])
        assert np.array_equal(r90, np.rot90(orig, 1, axes=(1, 2)))
        assert np.array_equal(r180, np.rot90(orig, 2, axes=(1, 2)))
    assert np.all(np.bincount(data.galaxy_id[data.labels == 0]) <= 1)


def test_target_minus_source_is_the_stated_noise(tiny):
    source, target = tiny["source"], tiny["target"]
    sigma = noise_sigma(25.0)
    assert target.attrs["noise_sigma"] == pytest.approx([sigma] * 3)
    assert target.attrs["limiting_sb_mag_arcsec2"] == 25.0
    assert source.attrs["noise"] == "none"
    diff = target.images.astype(np.float64) - source.images
    for band in range(3):
        d = diff[:, band].ravel()
        assert abs(d.mean()) < 5 * sigma / np.sqrt(d.size)
        assert d.std() == pytest.approx(sigma, rel=0.01)
        kurtosis = np.mean((d / d.std()) ** 4) - 3
        assert abs(kurtosis) < 0.05
    # Source: no noise, so empty sky is (numerically) zero: far below the noise level.
    corners = source.images[:, :, :5, :5]
    assert np.abs(corners).max() < 0.05 * sigma


def test_same_seed_same_bytes_other_seed_differs_workers_agree(tmp_path, tiny):
    a = simulate(tmp_path / "a", N_MERGERS, N_NONMERGERS, seed=5, workers=2, progress=False)
    b = simulate(tmp_path / "b", N_MERGERS, N_NONMERGERS, seed=6, workers=1, progress=False)
    for domain in ("source", "target"):
        again = load_domain_arrays(a[domain])
        assert np.array_equal(again.images, tiny[domain].images)  # workers 2 vs 1
        assert np.array_equal(again.split, tiny[domain].split)
        other = load_domain_arrays(b[domain])
        assert not np.array_equal(other.images, tiny[domain].images)


def test_independent_target(tmp_path, tiny):
    paths = simulate(
        tmp_path,
        N_MERGERS,
        N_NONMERGERS,
        seed=5,
        workers=1,
        progress=False,
        independent_target=True,
    )
    source, target = (load_domain_arrays(paths[d]) for d in ("source", "target"))
    assert np.array_equal(source.images, tiny["source"].images)
    assert np.array_equal(source.labels, target.labels)
    assert not set(source.galaxy_id) & set(target.galaxy_id)
    # Different galaxies, not only noise: the central light of a row no longer follows the
    # source's (it does, to within the noise, when the target shares the galaxies).
    def central_flux(images):
        return images[:, :, 32:43, 32:43].sum(axis=(1, 2, 3))

    independent = np.corrcoef(central_flux(source.images), central_flux(target.images))[0, 1]
    shared = np.corrcoef(central_flux(tiny["source"].images), central_flux(tiny["target"].images))
    assert shared[0, 1] > 0.95
    assert independent < 0.8
    assert target.attrs["independent_target"]


def test_validator_accepts_files(tmp_path):
    validate = pytest.importorskip("galaxies.validate")
    paths = simulate(tmp_path, 11, 3, seed=2, workers=1, progress=False)
    for path in paths.values():
        validate.validate_file(path)


def _cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "galaxies/simulate.py", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "x"
    result = _cli(
        "--out", str(out), "--n-mergers", "60", "--n-nonmergers", "50", "--seed", "3", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    source = load_domain_arrays(out / "source.h5")
    assert len(source) == 110 and int(source.labels.sum()) == 60
    assert (out / "target.h5").is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--n-mergers", "-5"], "negative"),
        (["--n-mergers", "10"], "--n-mergers"),
        (["--n-nonmergers", "2"], "--n-nonmergers"),
        (["--limiting-sb", "nan"], "--limiting-sb"),
        (["--limiting-sb", "-3"], "--limiting-sb"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_cli_bad_input(tmp_path, args, words):
    out = tmp_path / "never"
    result = _cli("--out", str(out), *args)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert words in last and "Fix:" in last
    assert not out.exists()


def test_cli_unwritable_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _cli("--out", str(blocker / "sub"), "--n-mergers", "15", "--n-nonmergers", "3")
    assert result.returncode != 0
    assert "writable" in result.stderr and "Fix:" in result.stderr


def test_ensure_benchmark_reuses_files(tmp_path, monkeypatch):
    from galaxies import benchmark

    monkeypatch.setenv("GALAXY_DA_DATA", str(tmp_path / "bench"))
    assert benchmark.default_data_dir() == tmp_path / "bench"
    calls = []

    def fake_simulate(out_dir, progress=True):
        calls.append(out_dir)
        return simulate(out_dir, 15, 3, seed=1, workers=1, progress=False)

    monkeypatch.setattr(benchmark, "simulate", fake_simulate)
    first = benchmark.ensure_benchmark(progress=False)
    second = benchmark.ensure_benchmark(progress=False)
    assert first == second == tmp_path / "bench"
    assert len(calls) == 1
    assert (first / "source.h5").is_file() and (first / "target.h5").is_file()


def test_plot_examples(tmp_path, tiny):
    from galaxies.plot import plot_examples

    paths = simulate(tmp_path, 15, 3, seed=1, workers=1, progress=False)
    png = plot_examples(paths["source"].parent, tmp_path / "ex.png", n_per_class=2)
    assert png.stat().st_size > 1000


def test_minor_interactions_add_a_companion_to_some_non_mergers(monkeypatch):
    """A minor interaction is appended after the galaxy's own draws: with it switched off
    the scene is the same galaxy minus the companion and debris; the default puts one in
    about half of the non-mergers, with a companion below the major-merger flux cut."""
    seed = np.random.SeedSequence(5)
    monkeypatch.setattr(morphology, "MINOR_INTERACTION_PROB", 0.0)
    plain = morphology.nonmerger(np.random.default_rng(seed))
    monkeypatch.setattr(morphology, "MINOR_INTERACTION_PROB", 1.0)
    minor = morphology.nonmerger(np.random.default_rng(seed))
    assert len(minor) > len(plain)
    for a, b in zip(plain, minor[: len(plain)], strict=True):
        np.testing.assert_array_equal(a.flux, b.flux)
    added_f160 = sum(c.flux[2] for c in minor[len(plain):])
    primary_f160 = sum(c.flux[2] for c in plain)
    # companion (<= 1/8 of the primary) + tails of both: well below a major merger's share
    assert 0 < added_f160 < primary_f160 * (1 / 8 + 0.2 + 0.2 / 8)
    monkeypatch.undo()
    assert morphology.MINOR_INTERACTION_PROB == 0.5
    counts = [len(morphology.nonmerger(np.random.default_rng(k))) for k in range(200)]
    monkeypatch.setattr(morphology, "MINOR_INTERACTION_PROB", 0.0)
    base = [len(morphology.nonmerger(np.random.default_rng(k))) for k in range(200)]
    share = np.mean(np.array(counts) > np.array(base))
    assert 0.38 < share < 0.62
