"""Tests of the GalSim benchmark simulator (tiny sets, CPU)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import galsim
import numpy as np
import pytest

from galaxies import morphology
from galaxies.pairs import data_identity
from galaxies.schema import DATASET_DTYPES, IMAGE_SHAPE, SPLITS, load_domain_arrays
from galaxies.simulate import AUGMENTATIONS, noise_sigma, simulate
from galaxies.validate import validate_pair

REPO = Path(__file__).resolve().parents[1]
N_MERGERS, N_NONMERGERS = 20, 15
#: The pair id of ``tiny`` as the simulator wrote it before ``--target-psf-scale`` existed
#: (commit e2a92b5): the default must keep it, so existing folders keep their data identity.
#: A deliberate change of the generator's attributes or layout changes it.
TINY_PAIR_ID = "efdbc224391ec97fb899cdaa340b9b3f"
PSF_SCALE = (1.2, 1.5, 2.0)  # target FWHM / source FWHM per filter in the tests below


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
        (["--target-psf-scale", "nan"], "--target-psf-scale"),
        (["--target-psf-scale", "0.5"], "--target-psf-scale"),
        (["--target-psf-scale", "1.2", "1.5"], "--target-psf-scale"),
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


def test_target_psf_width_scales_as_asked():
    """The target's PSFs are the source's widened by the factor of each filter, profile kept.

    Measured twice with GalSim: the FWHM of the PSF profiles the simulator convolves with
    (finely sampled, no pixel), and the width of a point source as ``morphology.render``
    draws it on the 0.04" pixels (adaptive-moment sigma, the pixel's variance of 1/12 px^2
    taken out). At fixed flux the peak falls as 1 / factor^2.
    """
    pairs = zip(morphology.psfs(), morphology.psfs(PSF_SCALE), strict=True)
    for band, (source, target) in enumerate(pairs):
        fwhm = [psf.drawImage(nx=401, ny=401, scale=0.002, method="no_pixel").calculateFWHM()
                for psf in (source, target)]
        assert fwhm[0] == pytest.approx(morphology.PSF_MODELS[band][1], rel=0.01)
        assert fwhm[1] / fwhm[0] == pytest.approx(PSF_SCALE[band], rel=0.01)
        assert type(target) is type(source)
        if isinstance(source, galsim.Moffat):
            assert target.beta == source.beta
    point = [morphology.Component(galsim.DeltaFunction(), np.ones(3))]
    drawn = {"source": morphology.render(point), "target": morphology.render(point, PSF_SCALE)}
    for band, factor in enumerate(PSF_SCALE):
        images = {d: galsim.Image(image[band].astype(np.float64)) for d, image in drawn.items()}
        width = {d: math.sqrt(galsim.hsm.FindAdaptiveMom(image).moments_sigma ** 2 - 1 / 12)
                 for d, image in images.items()}
        assert width["target"] / width["source"] == pytest.approx(factor, rel=0.03)
        flux = {d: image.array.sum() for d, image in images.items()}
        assert flux["target"] == pytest.approx(flux["source"], rel=0.03)
        peak = {d: image.array.max() for d, image in images.items()}
        assert peak["target"] / peak["source"] == pytest.approx(factor**-2, rel=0.05)


def test_default_target_psf_scale_changes_nothing(tmp_path, tiny):
    """Scale 1 (one value or three) writes what the simulator wrote before the option."""
    assert tiny["source"].attrs["pair_id"] == tiny["target"].attrs["pair_id"] == TINY_PAIR_ID
    folders = {}
    for name, value in (("one", 1.0), ("three", (1.0, 1.0, 1.0))):
        folders[name] = tmp_path / name
        paths = simulate(folders[name], N_MERGERS, N_NONMERGERS, seed=5, workers=1,
                         progress=False, target_psf_scale=value)
        for domain, path in paths.items():
            data = load_domain_arrays(path)
            assert np.array_equal(data.images, tiny[domain].images)
            assert data.attrs == tiny[domain].attrs
            assert "target_psf_scale" not in data.attrs
    for name in ("source.h5", "target.h5"):
        assert (folders["one"] / name).read_bytes() == (folders["three"] / name).read_bytes()
    assert data_identity(folders["one"]) == data_identity(folders["three"])


def test_psf_mismatched_pair(tmp_path, tiny):
    """Source unchanged; target = the same galaxies through the wider PSFs + the same noise."""
    paths = simulate(tmp_path, N_MERGERS, N_NONMERGERS, seed=5, workers=1, progress=False,
                     target_psf_scale=PSF_SCALE)
    source, target = (load_domain_arrays(paths[d]) for d in ("source", "target"))
    assert np.array_equal(source.images, tiny["source"].images)
    assert ({k: v for k, v in source.attrs.items() if k != "pair_id"}
            == {k: v for k, v in tiny["source"].attrs.items() if k != "pair_id"})
    assert target.attrs["target_psf_scale"] == list(PSF_SCALE)
    expected = [fwhm * s for (_, fwhm, _), s in zip(morphology.PSF_MODELS, PSF_SCALE, strict=True)]
    assert target.attrs["psf_fwhm_arcsec"] == pytest.approx(expected, rel=1e-9)
    assert target.attrs["psf_models"] == ['moffat fwhm=0.108" beta=3.0', 'airy fwhm=0.18"',
                                          'moffat fwhm=0.36" beta=2.5']
    assert target.attrs["noise_sigma"] == tiny["target"].attrs["noise_sigma"]
    # data identity: another pair id, and the target's attributes say why
    identity = data_identity(tmp_path)
    assert identity["target"]["attrs"]["pair_id"] != TINY_PAIR_ID
    assert identity["target"]["attrs"]["target_psf_scale"] == list(PSF_SCALE)
    # the noise realisation is the default target's, so taking it out leaves the wide render
    noise = tiny["target"].images.astype(np.float64) - tiny["source"].images
    wide = target.images - noise
    flux_ratio = wide.sum(axis=(2, 3)) / source.images.sum(axis=(2, 3))
    assert flux_ratio == pytest.approx(1.0, abs=0.02)  # flux conserved (bar the stamp edge)
    peak_ratio = wide.max(axis=(2, 3)) / source.images.max(axis=(2, 3))
    assert (peak_ratio < 1.0).all()  # a wider PSF at fixed flux lowers the peak
    assert (np.median(peak_ratio, axis=0) < [0.95, 0.8, 0.6]).all()
    validate_pair(tmp_path)


@pytest.mark.parametrize("scale", [["1.5"], ["1.2", "1.5", "2"]], ids=["one", "three"])
def test_cli_target_psf_scale(tmp_path, scale):
    out = tmp_path / "x"
    result = _cli("--out", str(out), "--n-mergers", "11", "--n-nonmergers", "3", "--seed", "5",
                  "--workers", "1", "--quiet", "--target-psf-scale", *scale)
    assert result.returncode == 0, result.stderr
    data = validate_pair(out)
    factors = [float(s) for s in scale] * (3 // len(scale))
    assert data["target"].attrs["target_psf_scale"] == factors
    assert "target_psf_scale" not in data["source"].attrs


def test_cli_bad_target_psf_scale_is_one_line_exit_2(tmp_path):
    out = tmp_path / "never"
    result = _cli("--out", str(out), "--target-psf-scale", "4")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [result.stderr.strip().splitlines()[-1]]
    assert "--target-psf-scale 4 is not a plausible PSF widening" in errors[0]
    assert "Fix: give factors between 1" in errors[0]
    assert not out.exists()
