"""galaxies.import_real: .npy and FITS round trips, provenance, grouping and every error path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from galaxies.import_real import main
from galaxies.schema import domain_paths
from galaxies.validate import validate_file

N = 24


def _arrays(seed: int, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, 3, 75, 75)).astype(np.float32)
    labels = np.tile([0.0, 1.0], n // 2)  # float labels, as in the published .npy files
    return images, labels


def _save_npy(folder: Path, name: str, images, labels) -> list[str]:
    np.save(folder / f"{name}_x.npy", images)
    np.save(folder / f"{name}_y.npy", labels)
    images_arg, labels_arg = str(folder / f"{name}_x.npy"), str(folder / f"{name}_y.npy")
    return [f"--{name}-images", images_arg, f"--{name}-labels", labels_arg]


def _npy_args(tmp_path: Path, source=None, target=None) -> list[str]:
    source = source or _arrays(0)
    target = target or _arrays(1)
    return (
        _save_npy(tmp_path, "source", *source)
        + _save_npy(tmp_path, "target", *target)
        + ["--out", str(tmp_path / "out")]
    )


def _import_fails(args: list[str], tmp_path: Path, capsys, expected: str) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Fix:" in err, err
    assert not list(tmp_path.glob("out/*")), "nothing may be written"


def test_npy_round_trip_and_provenance(tmp_path: Path) -> None:
    source, target = _arrays(0), _arrays(1)
    assert main(_npy_args(tmp_path, source, target)) == 0
    paths = domain_paths(tmp_path / "out")
    for domain, (images, labels) in (("source", source), ("target", target)):
        data = validate_file(paths[domain])
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.labels, labels.astype(np.uint8))
        assert sorted(data.galaxy_id.tolist()) == list(range(N))
        for label in (0, 1):  # stratified: 12 per class -> 8/2/2
            counts = np.bincount(data.split[data.labels == label], minlength=3)
            assert counts.tolist() == [8, 2, 2]
        attrs = data.attrs
        assert attrs["generator"] == "galaxies.import_real" and attrs["input_format"] == "npy"
        assert attrs["input_files"] == [f"{domain}_x.npy", f"{domain}_y.npy"]
        digest = hashlib.sha256((tmp_path / f"{domain}_x.npy").read_bytes()).hexdigest()
        assert attrs["input_sha256"][0] == digest
        assert attrs["noise"].startswith("as published")
        assert attrs["pixel_scale_arcsec"] > 0 and "imported_at" in attrs


def test_split_is_deterministic_from_seed(tmp_path: Path) -> None:
    args = _npy_args(tmp_path)
    splits = []
    for seed in ("1", "1", "2"):
        assert main([*args, "--seed", seed, "--force"]) == 0
        splits.append(validate_file(domain_paths(tmp_path / "out")["source"]).split)
    np.testing.assert_array_equal(splits[0], splits[1])
    assert not np.array_equal(splits[0], splits[2])


def test_channels_last_is_accepted(tmp_path: Path) -> None:
    images, labels = _arrays(0)
    args = _npy_args(tmp_path, source=(images.transpose(0, 2, 3, 1), labels))
    assert main(args) == 0
    data = validate_file(domain_paths(tmp_path / "out")["source"])
    np.testing.assert_array_equal(data.images, images)


@pytest.mark.parametrize("images_in_primary", [True, False])
def test_fits_round_trip(tmp_path: Path, images_in_primary: bool) -> None:
    args = ["--out", str(tmp_path / "out")]
    expected = {}
    for domain, seed in (("source", 0), ("target", 1)):
        images, labels = _arrays(seed)
        expected[domain] = images
        if images_in_primary:
            hdus = [fits.PrimaryHDU(images), fits.ImageHDU(labels.astype(np.int16))]
        else:
            column = fits.Column(name="label", format="E", array=labels)
            hdus = [
                fits.PrimaryHDU(),
                fits.ImageHDU(images),
                fits.BinTableHDU.from_columns([column]),
            ]
        fits.HDUList(hdus).writeto(tmp_path / f"{domain}.fits")
        args += [f"--{domain}-fits", str(tmp_path / f"{domain}.fits")]
    assert main(args) == 0
    for domain, path in domain_paths(tmp_path / "out").items():
        data = validate_file(path)
        np.testing.assert_array_equal(data.images, expected[domain])
        assert data.labels.tolist() == [0, 1] * (N // 2)
        assert data.attrs["input_format"] == "fits"


def _rotated_copies(n_galaxies: int, copies: int) -> tuple[np.ndarray, np.ndarray]:
    base, labels = _arrays(5, n_galaxies)
    images = np.concatenate([np.rot90(base, k, axes=(2, 3)) for k in range(copies)])
    return np.ascontiguousarray(images), np.tile(labels, copies)


def test_augmented_copies_grouped_into_one_galaxy(tmp_path: Path) -> None:
    source = _rotated_copies(20, 2)
    assert main([*_npy_args(tmp_path, source=source), "--augmented-copies", "2"]) == 0
    data = validate_file(domain_paths(tmp_path / "out")["source"])
    assert len(np.unique(data.galaxy_id)) == 20
    np.testing.assert_array_equal(data.galaxy_id[:20], data.galaxy_id[20:])
    np.testing.assert_array_equal(data.split[:20], data.split[20:])
    assert "20 galaxies in 40 rows" in data.attrs["id_grouping"]


def test_too_many_copies_is_an_error(tmp_path: Path, capsys) -> None:
    args = [*_npy_args(tmp_path, source=_rotated_copies(20, 4)), "--augmented-copies", "2"]
    _import_fails(args, tmp_path, capsys, "4 rows share one pixel multiset")


def test_wrong_shape(tmp_path: Path, capsys) -> None:
    images, labels = _arrays(0)
    args = _npy_args(tmp_path, target=(images[:, :, :64, :64], labels))
    _import_fails(args, tmp_path, capsys, "images have shape (24, 3, 64, 64)")


def test_nan_pixels(tmp_path: Path, capsys) -> None:
    images, labels = _arrays(0)
    images[5, 1, 2, 3] = np.nan
    _import_fails(_npy_args(tmp_path, source=(images, labels)), tmp_path, capsys, "row 5")


def test_labels_not_binary(tmp_path: Path, capsys) -> None:
    images, labels = _arrays(0)
    labels[3] = 2
    args = _npy_args(tmp_path, source=(images, labels))
    _import_fails(args, tmp_path, capsys, "labels must be 0 or 1, found [2.0]")


def test_length_mismatch(tmp_path: Path, capsys) -> None:
    images, labels = _arrays(0)
    args = _npy_args(tmp_path, target=(images, labels[:-2]))
    _import_fails(args, tmp_path, capsys, "22 labels for 24 images")


def test_missing_input(tmp_path: Path, capsys) -> None:
    args = _npy_args(tmp_path)
    (tmp_path / "target_y.npy").unlink()
    _import_fails(args, tmp_path, capsys, "target_y.npy: file does not exist")


def test_not_a_fits_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.fits").write_text("nope")
    args = [
        "--source-fits",
        str(tmp_path / "bad.fits"),
        "--target-fits",
        str(tmp_path / "bad.fits"),
    ]
    _import_fails([*args, "--out", str(tmp_path / "out")], tmp_path, capsys, "bad.fits")


@pytest.mark.parametrize("fmt", ["fits", "auto"])
def test_separate_fits_files(tmp_path: Path, fmt: str) -> None:
    args = ["--out", str(tmp_path / "out"), "--format", fmt]
    for domain, seed in (("source", 0), ("target", 1)):
        images, labels = _arrays(seed)
        fits.PrimaryHDU(images).writeto(tmp_path / f"{domain}_x.fits")
        fits.PrimaryHDU(labels).writeto(tmp_path / f"{domain}_y.fits")
        args += [f"--{domain}-images", str(tmp_path / f"{domain}_x.fits")]
        args += [f"--{domain}-labels", str(tmp_path / f"{domain}_y.fits")]
    assert main(args) == 0
    data = validate_file(domain_paths(tmp_path / "out")["target"])
    np.testing.assert_array_equal(data.images, _arrays(1)[0])
    assert data.attrs["input_files"] == ["target_x.fits", "target_y.fits"]


@pytest.mark.parametrize(
    "args",
    [
        ["--source-images", "a.npy", "--target-fits", "t.fits"],  # no source labels
        ["--source-fits", "s.fits", "--source-images", "a.npy", "--source-labels", "b.npy"],
        ["--source-fits", "s.fits"],  # no target
        ["--source-fits", "s.fits", "--target-fits", "t.fits", "--augmented-copies", "0"],
    ],
)
def test_inconsistent_arguments_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*args, "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert not (tmp_path / "out").exists()
