"""Issue 24, finding 11: FITS cut-outs whose filters or ids are ambiguous, and a FIFO as input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from galaxies.cutouts import read_cutouts
from galaxies.schema import FILTERS
from galaxies.validate import InvalidDatasetError

REPO = Path(__file__).resolve().parents[1]
SHORT = [name.split()[-1] for name in FILTERS]  # F814W, F356W, F160W


def _cube(path: Path, names: list[str]) -> np.ndarray:
    """Three [4, 75, 75] filter HDUs, HDU i filled with i + 1, EXTNAMEs ``names``."""
    hdus = [fits.PrimaryHDU()]
    for i, name in enumerate(names):
        hdu = fits.ImageHDU(np.full((4, 75, 75), i + 1.0, np.float32))
        if name:
            hdu.header["EXTNAME"] = name
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)
    return path


def test_filter_hdus_are_reordered_by_name_or_taken_in_order(tmp_path):
    reversed_names = read_cutouts(_cube(tmp_path / "r.fits", SHORT[::-1]))
    assert [float(reversed_names.images[0, c, 0, 0]) for c in range(3)] == [3.0, 2.0, 1.0]
    unnamed = read_cutouts(_cube(tmp_path / "u.fits", ["", "", ""]))
    assert [float(unnamed.images[0, c, 0, 0]) for c in range(3)] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("names", [[SHORT[0], SHORT[0], SHORT[2]], [SHORT[2], "", ""]],
                         ids=["a filter twice", "one filter named"])
def test_repeated_or_partial_filter_names_are_refused(tmp_path, names):
    """On 7ffe20d two HDUs named F814W were read in file order, silently."""
    path = _cube(tmp_path / "c.fits", names)
    with pytest.raises(InvalidDatasetError, match="do not name the 3 filters once each") as info:
        read_cutouts(path)
    assert "\n" not in str(info.value) and "Fix:" in str(info.value)


def test_two_files_of_one_stem_keep_distinct_ids(tmp_path):
    """On 7ffe20d ``a.fits`` and ``a.fit`` both became object ``a``."""
    folder = tmp_path / "objects"
    folder.mkdir()
    for name, value in (("a.fits", 1.0), ("a.fit", 2.0), ("b.fits", 3.0)):
        fits.PrimaryHDU(np.full((3, 75, 75), value, np.float32)).writeto(folder / name)
    cutouts = read_cutouts(folder)
    assert sorted(cutouts.object_id) == ["a.fit", "a.fits", "b"]
    assert len(set(cutouts.object_id)) == len(cutouts.object_id)
    by_id = dict(zip(cutouts.object_id, cutouts.images[:, 0, 0, 0], strict=True))
    assert (by_id["a.fits"], by_id["a.fit"]) == (1.0, 2.0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_waiting(tmp_path):
    """On 7ffe20d ``predict.py --images pipe.npy`` waited forever for a writer."""
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    code = ("import sys\nfrom galaxies.cutouts import read_cutouts\n"
            "from galaxies.validate import InvalidDatasetError\n"
            "try:\n    read_cutouts(sys.argv[1])\n"
            "except InvalidDatasetError as exc:\n    print(exc)\n    sys.exit(2)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(fifo)], cwd=REPO, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 2 and "not a regular file" in proc.stdout
