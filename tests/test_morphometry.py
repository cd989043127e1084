"""Tests of galaxies/morphometry.py (layout + statmorph statistics) and benchmarks/cue_audit.py."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galaxies import morphometry as mm

REPO = Path(__file__).resolve().parents[1]
SIZE = 75
CENTRE = (SIZE - 1) / 2.0
GRID = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
RADIUS = np.hypot(GRID[0] - CENTRE, GRID[1] - CENTRE)


def gaussian(dy: float, dx: float, sigma: float, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.exp(-((GRID[0] - CENTRE - dy) ** 2 + (GRID[1] - CENTRE - dx) ** 2)
                              / (2 * sigma**2))


def three_bands(image: np.ndarray, scales=(0.5, 1.5, 1.0)) -> np.ndarray:
    return np.stack([s * image for s in scales]).astype(np.float32)


@pytest.fixture(scope="module")
def cue_audit():
    spec = importlib.util.spec_from_file_location("cue_audit", REPO / "benchmarks/cue_audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- layout


@pytest.mark.parametrize("dy, dx", [(0, 0), (5, -3), (-7, 2), (3.4, -6.3), (0, 10)])
def test_layout_blob_offsets_and_fluxes(dy, dx):
    images = three_bands(gaussian(dy, dx, sigma=3.0))[None]
    row = mm.layout_statistics(images, noise_sigma=0.0).iloc[0]
    offset = math.hypot(dy, dx)
    assert row.peak_offset == pytest.approx(offset, abs=0.5)
    assert row.centroid_offset == pytest.approx(offset, abs=0.5)
    totals = images[0].astype(np.float64).sum(axis=(1, 2))
    assert [row.flux_f814w, row.flux_f356w, row.flux_f160w] == totals.tolist()
    assert row.ratio_f814w_f160w == pytest.approx(0.5)
    assert row.ratio_f356w_f160w == pytest.approx(1.5)
    assert row.radius == pytest.approx(3.0, rel=0.05)  # sigma of the round Gaussian
    assert row.n_peaks == 1 and row.n_peaks_10pct == 1
    assert row.background == pytest.approx(0.0, abs=1e-6)


def test_layout_counts_two_blobs_and_is_vectorised():
    single = three_bands(gaussian(0, 0, 2.5))
    double = three_bands(gaussian(0, -9, 2.5) + gaussian(0, 9, 2.5, amplitude=0.5))
    faint_companion = three_bands(gaussian(0, 0, 2.5) + gaussian(10, 10, 2.5, amplitude=0.05))
    frame = mm.layout_statistics(np.stack([single, double, faint_companion]), noise_sigma=0.0)
    assert list(frame.columns) == list(mm.LAYOUT_COLUMNS)
    assert frame.n_peaks.tolist() == [1, 2, 2]
    assert frame.n_peaks_10pct.tolist() == [1, 2, 1]  # the companion is 5 % of the peak
    assert frame.peak_offset[1] == pytest.approx(9.0, abs=0.5)  # the brighter one
    alone = mm.layout_statistics(double[None], noise_sigma=0.0)
    pd.testing.assert_frame_equal(alone, frame.iloc[[1]].reset_index(drop=True))


def test_layout_of_an_empty_image_is_nan_not_an_error():
    frame = mm.layout_statistics(np.zeros((2, 3, SIZE, SIZE), np.float32), noise_sigma=0.0)
    assert frame.peak_offset.isna().all() and frame.centroid_offset.isna().all()
    assert (frame.flux_f160w == 0).all() and frame.ratio_f814w_f160w.isna().all()
    assert (frame.n_peaks == 0).all()


def test_layout_noise_sets_the_threshold_and_border_estimates_it():
    rng = np.random.default_rng(0)
    sigma = 0.05
    noisy = three_bands(gaussian(0, 0, 3.0)) + rng.normal(0, sigma, (3, SIZE, SIZE))
    known = mm.layout_statistics(noisy[None].astype(np.float32), noise_sigma=[0, 0, sigma])
    estimated = mm.layout_statistics(noisy[None].astype(np.float32), noise_sigma=None)
    assert known.background_sigma[0] == pytest.approx(sigma, rel=0.15)
    assert known.peak_offset[0] < 1.5 and estimated.peak_offset[0] < 1.5
    # a 3-sigma threshold lets a noise peak or two through; 10 % of the galaxy's peak does not
    assert known.n_peaks_10pct[0] == 1 and known.n_peaks[0] >= 1
    assert mm.segment_threshold(0.0) == pytest.approx(mm.SEGMENT_FLOOR)
    assert mm.segment_threshold(0.004) == mm.SEGMENT_FLOOR  # v3 target: the isophote rules
    assert mm.segment_threshold(0.04) == pytest.approx(
        3 * 0.04 / (2 * math.sqrt(math.pi) * mm.SMOOTH_SIGMA_PX))  # noisier: 3 sigma
    assert mm.segment_threshold(0.0, pixel_scale_arcsec=0.08) == pytest.approx(
        4 * mm.SEGMENT_FLOOR)


def test_statistics_settings_from_attrs():
    assert mm.statistics_settings({"noise_sigma": [0.0, 0.0, 0.004],
                                   "pixel_scale_arcsec": 0.04}) == {
        "noise_sigma": [0.0, 0.0, 0.004], "pixel_scale_arcsec": 0.04}
    assert mm.statistics_settings({"noise": "gaussian"}) == {
        "noise_sigma": None, "pixel_scale_arcsec": mm.PIXEL_SCALE_ARCSEC}


# ---------------------------------------------------------------------------- statmorph


@pytest.fixture(scope="module")
def disc_point_empty():
    disc = (RADIUS <= 12).astype(np.float64) * 0.05
    point = gaussian(0, 0, 1.2)
    point *= disc.sum() / point.sum()
    images = np.stack([three_bands(disc), three_bands(point),
                       np.zeros((3, SIZE, SIZE), np.float32), three_bands(-disc)])
    return images, mm.morphology_statistics(images, 0.0, workers=1, progress=False)


def test_gini_and_concentration_direction(disc_point_empty):
    _, frame = disc_point_empty
    assert list(frame.columns) == list(mm.MORPHOLOGY_COLUMNS)
    disc, point = frame.iloc[0], frame.iloc[1]
    assert disc.morph_flag <= 1 and point.morph_flag <= 1
    assert disc.gini < 0.2 < 0.35 < point.gini  # uniform light: low Gini; compact: high
    assert point.concentration > disc.concentration
    assert point.m20 < disc.m20


def test_failures_are_nan_rows_with_a_flag(disc_point_empty, monkeypatch):
    _, frame = disc_point_empty
    for i in (2, 3):  # all zero, all negative: nothing detected
        assert frame.morph_flag[i] == mm.FLAG_NO_SEGMENT
        assert frame.loc[i, list(mm.MORPHOLOGY_FEATURES)].isna().all()
    assert frame.loc[[0, 1], list(mm.MORPHOLOGY_FEATURES)].notna().all().all()

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("statmorph blew up")

    monkeypatch.setattr(mm, "_morphology_class", lambda: Broken)
    images, _ = disc_point_empty
    broken = mm.morphology_statistics(images[:1], 0.0, workers=1, progress=False)
    assert broken.morph_flag[0] == mm.FLAG_ERROR
    assert broken.loc[0, list(mm.MORPHOLOGY_FEATURES)].isna().all()


def test_statmorph_bad_flag_gives_nan(monkeypatch):
    real = mm._morphology_class()

    class AlwaysBad(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.flag = 2

    monkeypatch.setattr(mm, "_morphology_class", lambda: AlwaysBad)
    frame = mm.morphology_statistics(three_bands(gaussian(0, 0, 2.0))[None], 0.0, workers=1,
                                     progress=False)
    assert frame.morph_flag[0] == 2 and frame.loc[0, list(mm.MORPHOLOGY_FEATURES)].isna().all()
    assert frame.n_segments[0] == 1 and frame.segment_area[0] > 0


def test_sersic_fit_is_skipped_and_results_match_stock_statmorph():
    import statmorph
    from photutils.segmentation import detect_sources
    from scipy import ndimage

    image = gaussian(0, 0, 2.5) + gaussian(6, -4, 1.5, amplitude=0.4)
    segments = detect_sources(ndimage.gaussian_filter(image, 1.5, mode="constant"),
                              mm.segment_threshold(0.0), n_pixels=10)
    segmap = (segments.data == segments.data[37, 37]).astype(int)
    weights = np.full(image.shape, mm.SIGMA_FLOOR)
    ours = mm._morphology_class()(image, segmap, 1, weightmap=weights, n_sigma_outlier=-1,
                                  sky_sigma_floor=mm.SIGMA_FLOOR)
    assert "sersic_n" not in ours.__dict__  # lazy property never evaluated: no Sersic fit
    stock = statmorph.SourceMorphology(image, segmap, 1, weightmap=weights, n_sigma_outlier=-1)
    for name in mm.MORPHOLOGY_FEATURES:
        assert ours[name] == stock[name], name


def test_workers_give_the_same_table():
    images = np.stack([three_bands(gaussian(dy, 0, 2.0) + gaussian(0, 8, 1.5, 0.3 * dy))
                       for dy in (0, 1, 2, 3)])
    serial = mm.image_statistics(images, 0.0, workers=1, progress=False)
    parallel = mm.image_statistics(images, 0.0, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(serial.columns) == [*mm.LAYOUT_COLUMNS, *mm.MORPHOLOGY_COLUMNS]


def test_every_column_is_documented():
    for table in (mm.LAYOUT_COLUMNS, mm.MORPHOLOGY_COLUMNS):
        for name, text in table.items():
            assert text.strip() and "\n" not in text, name
    assert set(mm.MORPHOLOGY_FEATURES) < set(mm.MORPHOLOGY_COLUMNS)
    for citation in ("Lotz", "Conselice 2003", "Freeman et al. 2013", "Pawlik et al. 2016",
                     "Rodriguez-Gomez et al. 2019", "100390"):
        assert citation in mm.__doc__


# ---------------------------------------------------------------------------- cue audit


def test_cue_audit_writes_aucs_and_gbt_accuracies(cue_audit, tiny_domain_pair, tmp_path,
                                                  capsys):
    out = tmp_path / "sub" / "audit.json"
    assert cue_audit.main(["--data", str(tiny_domain_pair), "--max-per-class", "2",
                           "--workers", "1", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "generator_version" in printed and "wall time" in printed
    assert "| statistic | family | AUC source |" in printed
    result = json.loads(out.read_text())
    statistics = [*mm.LAYOUT_COLUMNS, *mm.MORPHOLOGY_COLUMNS]
    statistics.remove("morph_flag")
    assert set(result["auc"]) == set(statistics) == set(result["auc_order"])
    for entry in result["auc"].values():
        for domain in ("source", "target"):
            assert set(entry[domain]) == {"auc", "n"}
            assert entry[domain]["auc"] is None or 0 <= entry[domain]["auc"] <= 1
    for family in ("all", "layout", "statmorph"):
        for domain in ("source", "target"):
            assert 0 <= result["gbt"][family][f"{domain}_test_accuracy"] <= 1
    # one copy per galaxy, at most 2 galaxies per class and split (the tiny pair has 2 merger
    # galaxies in train and 1 in test)
    assert result["sample_sizes"]["source"] == {"train": {"merger": 2, "non-merger": 2},
                                                "test": {"merger": 1, "non-merger": 2}}
    assert result["generator_version"] == {"source": "1", "target": "1"}


def test_cue_audit_bad_data_exits_2(cue_audit, tmp_path, capsys):
    assert cue_audit.main(["--data", str(tmp_path / "missing"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "does not exist" in err
