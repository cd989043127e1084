"""galaxies.validate: every schema violation gives one clear line; valid files pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from galaxies.schema import FILTERS, domain_paths, write_domain
from galaxies.validate import InvalidDatasetError, main, summarize, validate_file


def _replace(h5: h5py.File, name: str, array: np.ndarray) -> None:
    del h5[name]
    h5[name] = array


def _set_rows(name: str, rows: list[int], value) -> callable:
    def edit(h5: h5py.File) -> None:
        array = h5[name][...]
        array[rows] = value
        _replace(h5, name, array)

    return edit


CORRUPTIONS = {
    "missing dataset": (lambda h5: h5.__delitem__("split"), "missing datasets ['split']"),
    "images not 4-d": (lambda h5: _replace(h5, "images", h5["images"][:, 0]), "images have shape"),
    "channel count": (
        lambda h5: _replace(h5, "images", np.zeros((40, 4, 75, 75), np.float32)),
        "4 channels",
    ),
    "image size": (
        lambda h5: _replace(h5, "images", np.zeros((40, 3, 64, 64), np.float32)),
        "64x64 pixels",
    ),
    "image dtype": (
        lambda h5: _replace(h5, "images", h5["images"][...].astype(np.float64)),
        "images has dtype float64",
    ),
    "label dtype": (
        lambda h5: _replace(h5, "labels", h5["labels"][...].astype(np.int64)),
        "labels has dtype int64",
    ),
    "lengths": (lambda h5: _replace(h5, "labels", h5["labels"][:-1]), "different lengths"),
    "nan": (_set_rows("images", [3, 7], np.nan), "pixels are NaN or inf in 2 images"),
    "inf": (_set_rows("images", [5], np.inf), "first row 5"),
    "label value": (_set_rows("labels", [2], 2), "labels must be 0 or 1, found [2] in row 2"),
    "split code": (_set_rows("split", [0], 3), "split codes must be 0, 1 or 2"),
    "empty split": (
        lambda h5: _replace(h5, "split", np.where(h5["split"][...] == 1, 0, h5["split"][...])),
        "split val has no rows",
    ),
    "galaxy in two splits": (_set_rows("split", [4], 2), "id 0 in train and test"),
    "missing attribute": (lambda h5: h5.attrs.__delitem__("noise"), "attributes ['noise']"),
    "filter order": (
        lambda h5: h5.attrs.__setitem__("filters", list(FILTERS[::-1])),
        "expected ['ACS F814W', 'NC F356W', 'WFC3 F160W'] in this order",
    ),
    "domain name": (lambda h5: h5.attrs.__setitem__("domain", "sauce"), "domain is 'sauce'"),
    # Issue 24, finding 10: pixel scale and PSF sizes are numbers a user can get wrong.
    "pixel scale -1": (lambda h5: h5.attrs.__setitem__("pixel_scale_arcsec", -1.0),
                       "pixel_scale_arcsec is -1.0"),
    "pixel scale 0": (lambda h5: h5.attrs.__setitem__("pixel_scale_arcsec", 0.0),
                      "expected one finite number > 0"),
    "pixel scale nan": (lambda h5: h5.attrs.__setitem__("pixel_scale_arcsec", np.nan),
                        "pixel_scale_arcsec is nan"),
    "pixel scale text": (lambda h5: h5.attrs.__setitem__("pixel_scale_arcsec", "fine"),
                         "pixel_scale_arcsec is 'fine'"),
    "psf inf": (lambda h5: h5.attrs.__setitem__("psf_fwhm_arcsec", [0.1, np.inf, 0.2]),
                "psf_fwhm_arcsec is"),
    "psf count": (lambda h5: h5.attrs.__setitem__("psf_fwhm_arcsec", [0.1, 0.2]),
                  "one per filter (3)"),
}


@pytest.fixture
def valid_file(tmp_path: Path, tiny_domain_arrays) -> Path:
    return write_domain(tmp_path / "source.h5", tiny_domain_arrays["source"])


def _assert_one_line(err: InvalidDatasetError, path: Path, expected: str) -> None:
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert ". Fix: " in message and err.fix and err.path == str(path)
    assert expected in message, message


def test_valid_pair_loads(tiny_domain_pair: Path) -> None:
    for domain, path in domain_paths(tiny_domain_pair).items():
        data = validate_file(path)
        assert len(data) == 40 and data.attrs["domain"] == domain
        text = summarize(data)
        assert "24 galaxies" in text and "train" in text and "ACS F814W" in text


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corruption_is_reported(valid_file: Path, case: str) -> None:
    edit, expected = CORRUPTIONS[case]
    with h5py.File(valid_file, "r+") as h5:
        edit(h5)
    with pytest.raises(InvalidDatasetError) as info:
        validate_file(valid_file)
    _assert_one_line(info.value, valid_file, expected)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidDatasetError) as info:
        validate_file(tmp_path / "nope.h5")
    _assert_one_line(info.value, tmp_path / "nope.h5", "file does not exist")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidDatasetError, match="is not a file"):
        validate_file(tmp_path)


def test_truncated_file(valid_file: Path) -> None:
    content = valid_file.read_bytes()
    valid_file.write_bytes(content[: len(content) // 2])
    with pytest.raises(InvalidDatasetError) as info:
        validate_file(valid_file)
    _assert_one_line(info.value, valid_file, "not a readable HDF5 file")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    with pytest.raises(InvalidDatasetError, match="not a readable HDF5 file"):
        validate_file(path)


def test_nan_message_counts_pixels(valid_file: Path) -> None:
    with h5py.File(valid_file, "r+") as h5:
        images = h5["images"][...]
        images[3, 0, :2, 0] = np.nan
        images[7, 2, 5, 5] = np.inf
        _replace(h5, "images", images)
    with pytest.raises(InvalidDatasetError, match=r"3 pixels .* \(rows 3, 7; first row 3\)"):
        validate_file(valid_file)


def test_cli_checks_every_file(tiny_domain_pair: Path, tmp_path: Path, capsys) -> None:
    paths = domain_paths(tiny_domain_pair)
    assert main([str(paths["source"]), str(paths["target"])]) == 0
    assert "OK" in capsys.readouterr().out
    missing = tmp_path / "missing.h5"
    assert main([str(paths["source"]), str(missing)]) == 1
    captured = capsys.readouterr()
    assert "source: 40 images" in captured.out
    assert f"INVALID {missing}: file does not exist" in captured.err
    assert "Traceback" not in captured.err


def test_cli_as_script_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "galaxies" / "validate.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "x.h5")], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def _pair_with(tmp_path: Path, tiny_domain_arrays, **target_attrs) -> Path:
    for domain, data in tiny_domain_arrays.items():
        if domain == "target":
            data.attrs.update(target_attrs)
        write_domain(domain_paths(tmp_path)[domain], data)
    return tmp_path


def test_pixel_scales_are_compared_whatever_the_pair_ids_say(tmp_path: Path, tiny_domain_arrays):
    """Issue 24, finding 10: the same pair id does not make a 0.06" target fit a 0.04" source."""
    from galaxies.datasets import load_benchmark
    from galaxies.validate import validate_pair

    folder = _pair_with(tmp_path, tiny_domain_arrays, pixel_scale_arcsec=0.04,
                        pair_id=tiny_domain_arrays["source"].attrs.get("pair_id", "same"))
    if "pair_id" not in tiny_domain_arrays["source"].attrs:  # the pair ids agree either way
        with h5py.File(domain_paths(folder)["source"], "r+") as h5:
            h5.attrs["pair_id"] = "same"
    for load in (validate_pair, load_benchmark):
        with pytest.raises(InvalidDatasetError) as info:
            load(folder)
        _assert_one_line(info.value, domain_paths(folder)["target"],
                         "pixel scale 0.04 arcsec differs from the source's 0.06 arcsec")


def test_a_broader_target_psf_is_a_shift_not_an_error(tmp_path: Path, tiny_domain_arrays):
    from galaxies.validate import validate_pair

    folder = _pair_with(tmp_path, tiny_domain_arrays, psf_fwhm_arcsec=[0.2, 0.3, 0.4])
    data = validate_pair(folder)
    assert "PSF FWHM: 0.2, 0.3, 0.4 arcsec" in summarize(data["target"])
    assert "pixel scale: 0.06 arcsec, PSF FWHM: 0.15 arcsec" in summarize(data["source"])


def test_a_stated_target_psf_scale_must_match_the_psfs(tmp_path: Path, tiny_domain_arrays):
    """A target that says its PSF is the source's x s (``simulate.py --target-psf-scale``)
    passes when its FWHMs are; a file whose FWHMs or factors contradict that is refused."""
    from galaxies.validate import validate_pair

    arrays = tiny_domain_arrays  # source PSF FWHM 0.15"
    good = _pair_with(tmp_path / "good", arrays, psf_fwhm_arcsec=[0.18, 0.225, 0.3],
                      target_psf_scale=[1.2, 1.5, 2.0])
    data = validate_pair(good)
    assert "PSF FWHM: 0.18, 0.225, 0.3 arcsec (the source's x 1.2, 1.5, 2)" in summarize(
        data["target"])
    assert main([str(good)]) == 0
    for name, attrs, expected in (
        ("fwhm", {"psf_fwhm_arcsec": 0.15, "target_psf_scale": 1.5},
         "PSF FWHM 0.15 arcsec is not the source's 0.15 arcsec times the file's "
         "target_psf_scale 1.5"),
        ("count", {"psf_fwhm_arcsec": 0.15, "target_psf_scale": [1.0, 1.0]},
         "attribute target_psf_scale is"),
        ("factor", {"psf_fwhm_arcsec": 0.15, "target_psf_scale": [1.0, np.nan, 1.0]},
         "attribute target_psf_scale is"),
    ):
        folder = _pair_with(tmp_path / name, arrays, **attrs)
        with pytest.raises(InvalidDatasetError) as info:
            validate_pair(folder)
        _assert_one_line(info.value, domain_paths(folder)["target"], expected)
