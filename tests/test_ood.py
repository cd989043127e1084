"""Out-of-distribution score (apply/ood.py, apply/fit_ood.py, predict.py's ood columns).

``ood_trial`` is a DeepMerge trial trained for 3 epochs on a blob benchmark made here (the
blobs of tests/conftest.py, one galaxy per row, target = source + Gaussian noise) with 600
target training, 1000 validation and 1000 test images, so that the flag rate on held-out
target images can be checked against alpha with a fair binomial tolerance. The fit reads the
target train and validation splits only; the tests that edit files use copies of
``tiny_trial`` (conftest).
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from apply.fit_ood import fit_trial
from apply.fit_ood import main as fit_main
from apply.ood import (
    DEFAULT_ALPHA,
    OodReference,
    conformal_threshold,
    ensemble_score,
    fit_reference,
    mahalanobis,
    read_reference,
)
from apply.predict import main as predict_main
from galaxies.schema import (
    FILTERS,
    IMAGE_SIZE,
    SPLITS,
    DomainData,
    domain_paths,
    load_domain_arrays,
    write_domain,
)
from training.record import OOD_REFERENCE_FILE

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_VAL, N_TEST = 600, 1000, 1000  # target rows per split
NOISE = 0.05


def _ood_check():
    spec = importlib.util.spec_from_file_location("ood_check", REPO / "benchmarks/ood_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blob_domain(rng: np.random.Generator, sizes: tuple[int, int, int], noise: float,
                domain: str) -> DomainData:
    """One domain of blobs (mergers = two blobs), each row its own galaxy."""
    n = sum(sizes)
    grid = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.uint8)
    images = np.zeros((n, len(FILTERS), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for i in range(n):
        for _ in range(1 + int(labels[i])):
            cy, cx = rng.uniform(25, 50, size=2)
            width = rng.uniform(3, 8)
            profile = np.exp(-((grid[0] - cy) ** 2 + (grid[1] - cx) ** 2) / (2 * width**2))
            images[i] += rng.uniform(0.5, 2.0, size=(3, 1, 1)).astype(np.float32) * profile
    if noise:
        images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    split = np.repeat([SPLITS["train"], SPLITS["val"], SPLITS["test"]], sizes).astype(np.uint8)
    attrs = {"filters": list(FILTERS), "pixel_scale_arcsec": 0.06, "psf_fwhm_arcsec": 0.15,
             "generator": "tests/test_ood.py", "generator_version": "1", "seed": 0,
             "domain": domain, "noise": f"gaussian sigma={noise}",
             "noise_sigma": [noise] * len(FILTERS)}
    return DomainData(images=images, labels=labels, galaxy_id=np.arange(n, dtype=np.int64),
                      split=split, attrs=attrs)


@pytest.fixture(scope="session")
def ood_pair(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ood_pair")
    rng = np.random.default_rng(7)
    paths = domain_paths(folder)
    write_domain(paths["source"], blob_domain(rng, (600, 100, 100), 0.0, "source"))
    write_domain(paths["target"], blob_domain(rng, (N_TRAIN, N_VAL, N_TEST), NOISE, "target"))
    return folder


@pytest.fixture(scope="session")
def ood_trial(ood_pair, tmp_path_factory) -> Path:
    from training.loop import run_trial
    from training.naming import problem_config

    out = tmp_path_factory.mktemp("ood_trial") / "none"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = run_trial(problem_config("none_deepmerge", ["epochs=3", "batch_size=32"]),
                           ood_pair, out, progress=False)
        assert record["status"] == "ok"
        fit_trial(out)
    finally:
        torch.set_num_threads(before)
    return out


def predict(*argv) -> int:
    return predict_main([str(a) for a in argv] + ["--quiet"])


def ood_meta(out: Path) -> dict:
    return json.loads((out / "catalogue.json").read_text())["ood"]


# --- the formulas ----------------------------------------------------------------------------


def test_mahalanobis_conformal_threshold_and_ledoit_wolf():
    from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 4)) @ np.diag([1.0, 2.0, 0.5, 1.0])
    val = rng.normal(size=(50, 4))
    ref = fit_reference(train, val, alpha=0.1)
    lw = LedoitWolf().fit(train)
    np.testing.assert_allclose(ref.mean, train.mean(0))
    np.testing.assert_allclose(ref.precision, lw.precision_, rtol=1e-10)
    expected = [scipy_mahalanobis(v, lw.location_, lw.precision_) for v in val]
    np.testing.assert_allclose(ref.calibration_scores, expected, rtol=1e-10)
    # k = ceil(51 * 0.9) = 46: the 46th smallest of the 50 validation distances
    assert ref.threshold == np.sort(expected)[45]
    assert conformal_threshold(np.arange(1.0, 20.0), 0.05) == 19.0  # m = 19: k = 19
    assert conformal_threshold(np.arange(1.0, 8.0), 0.05) == 7.0    # m < 19: capped at m
    assert conformal_threshold(np.arange(1.0, 100.0), 0.05) == 95.0  # k = ceil(95) = 95
    assert mahalanobis(np.array([[np.inf, 0, 0, 0]]), ref.mean, ref.precision)[0] == np.inf
    with pytest.raises(ValueError, match="alpha"):
        fit_reference(train, val, alpha=1.0)
    with pytest.raises(ValueError, match="not finite"):
        fit_reference(np.vstack([train, [np.nan] * 4]), val)


def _reference(rng, threshold_scale: float, scores: np.ndarray, key: str = "k") -> OodReference:
    threshold = conformal_threshold(scores * threshold_scale, 0.1)
    return OodReference(np.zeros(2), np.eye(2), threshold, 0.1, scores * threshold_scale, key,
                        "", 0.0, 10)


def test_an_ensemble_threshold_is_recalibrated_on_the_shared_validation_images():
    """Mean of d_i / t_i; its threshold is the conformal quantile of the members' mean
    validation ratio, so fresh exchangeable objects are flagged at about alpha."""
    rng = np.random.default_rng(1)
    base = rng.chisquare(3, size=(2, 4000))  # two members, correlated through row order
    val = base[:, :2000]
    refs = [_reference(rng, 1.0, val[0]), _reference(rng, 7.0, val[1])]
    fresh = [base[0, 2000:], 7.0 * base[1, 2000:]]
    score, threshold = ensemble_score(refs, fresh)
    ratios = np.mean([val[0] / refs[0].threshold, 7.0 * val[1] / refs[1].threshold], axis=0)
    assert threshold == conformal_threshold(ratios, 0.1)
    # 2000 fresh rows: binomial sd of the rate sqrt(0.1 * 0.9 / 2000) ~ 0.007 (+ threshold's)
    assert abs(np.mean(score > threshold) - 0.1) < 0.03
    one, one_threshold = ensemble_score(refs[:1], fresh[:1])
    assert one_threshold == 1.0 and np.array_equal(one, fresh[0] / refs[0].threshold)
    with pytest.raises(ValueError, match="different validation images"):
        ensemble_score([refs[0], _reference(rng, 1.0, val[1], key="other")], fresh)


def test_penultimate_is_what_the_last_linear_reads():
    from models import create_classifier
    from training.config import default_config

    x = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    for backbone, width in (("deepmerge", 32), ("resnet18", 256)):
        network = create_classifier(default_config("none", backbone)).eval()
        with torch.no_grad():
            z = network.penultimate(x)
            assert z.shape == (3, width)
            torch.testing.assert_close(network.head.classifier[-1](z), network(x))


# --- the rate on held-out target images and on Hubble pixels ----------------------------------


def test_target_test_images_are_flagged_at_about_alpha(ood_trial, ood_pair, tmp_path):
    """The threshold is the conformal quantile of 1000 validation distances; on 1000 test
    images the flagged fraction has sd sqrt(a(1-a)/(m+2) + a(1-a)/n) ~ 0.0097 (threshold
    coverage + binomial sampling): within 3 sd of alpha = 0.05, i.e. +-0.029."""
    out = tmp_path / "cat"
    assert predict("--trial", ood_trial, "--images", domain_paths(ood_pair)["target"],
                   "--split", "test", "--out", out) == 0
    frame = pd.read_csv(out / "catalogue.csv")
    assert len(frame) == N_TEST and {"ood_score", "ood_flag"} <= set(frame.columns)
    assert list(frame.columns)[-2:] == ["ood_score", "ood_flag"]
    assert (frame["ood_flag"] == (frame["ood_score"] > 1.0)).all()
    alpha = DEFAULT_ALPHA
    sd = math.sqrt(alpha * (1 - alpha) / (N_VAL + 2) + alpha * (1 - alpha) / N_TEST)
    rate = frame["ood_flag"].mean()
    assert abs(rate - alpha) <= 3 * sd, (rate, sd)
    meta = ood_meta(out)
    assert meta["columns"] and meta["alpha"] == alpha and meta["threshold"] == 1.0
    assert meta["fraction_flagged"] == pytest.approx(rate)
    assert f"({100 * rate:.1f} %) have ood_flag" in meta["summary"] and "5 %" in meta["summary"]


def test_hubble_deep_field_stamps_are_flagged(ood_trial, tmp_path, capsys):
    """Real galaxies from the Hubble image shipped in scikit-image's wheel (no download),
    scaled to the target's sky noise, and as raw 8-bit values: > 90 % flagged."""
    ood_check = _ood_check()
    ood_check.hubble_image()  # raises if scikit-image would have to download it
    for sigma in (NOISE, None):
        stamps = ood_check.hubble_stamps(100, noise_sigma=sigma)
        assert stamps.shape == (100, 3, 75, 75) and stamps.dtype == np.float32
        np.save(tmp_path / "hubble.npy", stamps)
        out = tmp_path / f"cat_{sigma}"
        assert predict("--trial", ood_trial, "--images", tmp_path / "hubble.npy",
                       "--out", out) == 0
        assert "have ood_flag" in capsys.readouterr().out
        frame = pd.read_csv(out / "catalogue.csv")
        assert frame["ood_flag"].mean() > 0.9, (sigma, frame["ood_flag"].mean())


def test_the_shift_meter_calls_rescaled_hubble_stamps_outside(ood_trial, tmp_path):
    """Issue 26: stamps rescaled to the target's sky noise read at the target's depth (their
    seeing reads beyond the atlas's: tests/test_shift.py), and the model's features flag them
    too, so the meter's verdict is outside with both reasons."""
    from apply import shift
    from galaxies.simulate import noise_sigma

    np.save(tmp_path / "hubble.npy", _ood_check().hubble_stamps(100,
                                                                noise_sigma=noise_sigma(25.0)))
    result = shift.measure(tmp_path / "hubble.npy", shift.DEFAULT_ATLAS, ood_trial)
    assert result["reading"]["sb_lim"] == pytest.approx(25.0, abs=0.3)
    assert result["model"]["ood"]["flagged"] > 0.9
    assert result["model"]["ood"]["auc"] > 0.9 and result["model"]["ood"]["p_value"] < 1e-10
    assert result["verdict"]["outside"]
    assert any("model's features flag" in reason for reason in result["verdict"]["reasons"])


def test_an_ensemble_gets_one_score_and_the_members_alpha(ood_trial, ood_pair, tmp_path):
    """The same model twice: the mean ratio equals one member's; the threshold stays 1."""
    out, one = tmp_path / "two", tmp_path / "one"
    images = load_domain_arrays(domain_paths(ood_pair)["target"]).images[-50:]
    np.save(tmp_path / "x.npy", images)
    for folder, trials in ((one, [ood_trial]), (out, [ood_trial, ood_trial])):
        assert predict("--trial", *trials, "--images", tmp_path / "x.npy", "--out", folder) == 0
    a, b = pd.read_csv(one / "catalogue.csv"), pd.read_csv(out / "catalogue.csv")
    np.testing.assert_allclose(a["ood_score"], b["ood_score"], rtol=1e-12)
    assert (a["ood_flag"] == b["ood_flag"]).all()
    assert len(ood_meta(out)["members"]) == 2


# --- what the fit reads, and bad or missing files ---------------------------------------------


def _copy_trial(trial: Path, folder: Path) -> Path:
    copy = folder / "trial"
    shutil.copytree(trial, copy)
    return copy


def test_the_fit_reads_neither_target_test_images_nor_labels(tiny_trial, tiny_domain_pair,
                                                            tmp_path):
    trial = _copy_trial(tiny_trial, tmp_path)
    first = fit_trial(trial, tiny_domain_pair)
    changed = tmp_path / "changed"
    for domain, path in domain_paths(tiny_domain_pair).items():
        data = load_domain_arrays(path)
        if domain == "target":
            test = data.split == SPLITS["test"]
            data.images[test] = data.images[test][::-1] * 50.0 + 3.0  # other test images
            data.labels = (1 - data.labels).astype(np.uint8)          # every label flipped
        write_domain(domain_paths(changed)[domain], data)
    second = fit_trial(trial, changed)
    for field in ("mean", "precision", "calibration_scores"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert first.threshold == second.threshold and first.n_reference == 24  # the train split
    assert len(first.calibration_scores) == 7  # the 7 validation rows
    with np.load(trial / OOD_REFERENCE_FILE, allow_pickle=False) as stored:
        assert str(stored["fitted_on"]) == "target_train"
        assert str(stored["calibrated_on"]) == "target_val"


def test_missing_stale_and_corrupt_references(tiny_trial, tiny_domain_pair, tmp_path, capsys):
    trial = _copy_trial(tiny_trial, tmp_path)
    images = load_domain_arrays(domain_paths(tiny_domain_pair)["target"]).images[:8]
    np.save(tmp_path / "x.npy", images)
    x = tmp_path / "x.npy"
    # missing: no columns, one summary line naming the fit command; the rest unchanged
    assert predict("--trial", trial, "--images", x, "--out", tmp_path / "none") == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[1].startswith("no OOD score") and "apply/fit_ood.py" in out[1]
    frame = pd.read_csv(tmp_path / "none" / "catalogue.csv")
    assert list(frame.columns)[-1] == "predicted_merger" and "ood_score" not in frame.columns
    assert not ood_meta(tmp_path / "none")["columns"]
    # --domain source: none either (the reference describes target images)
    assert fit_main(["--trial", str(trial)]) == 0
    assert "conformal 0.95 quantile of 7" in capsys.readouterr().out
    assert predict("--trial", trial, "--images", x, "--out", tmp_path / "src",
                   "--domain", "source") == 0
    assert "--domain source" in capsys.readouterr().out.splitlines()[1]
    good = dict(np.load(trial / OOD_REFERENCE_FILE, allow_pickle=False))
    cases = {
        "stale": ({**good, "checkpoint_sha256": np.str_("0" * 64)}, "another checkpoint.pt"),
        "shapes": ({**good, "precision": np.eye(3)}, "do not fit together"),
        "threshold": ({**good, "threshold": np.float64(np.nan)}, "non-finite"),
        "alpha": ({**good, "alpha": np.float64(1.5)}, "alpha 1.5"),
        "missing key": ({k: v for k, v in good.items() if k != "mean"}, "not a readable"),
        "pickle": ({**good, "mean": np.array([object()], dtype=object)}, "not a readable"),
    }
    for name, (arrays, message) in cases.items():
        with open(trial / OOD_REFERENCE_FILE, "wb") as handle:
            np.savez(handle, **arrays)
        assert predict("--trial", trial, "--images", x, "--out", tmp_path / name) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "apply/fit_ood.py" in err[0], (name, err)
        assert not (tmp_path / name).exists()
    (trial / OOD_REFERENCE_FILE).write_bytes(b"not an npz archive")
    assert read_reference(tmp_path / "nowhere") is None
    with pytest.raises(ValueError, match="not a readable OOD reference"):
        read_reference(trial)
    assert fit_main(["--trial", str(trial)]) == 0  # refitting replaces a corrupt file
    assert read_reference(trial) is not None


def test_fit_refuses_bad_arguments_and_other_data(tiny_trial, tmp_path, capsys):
    from conftest import make_tiny_pair

    other = tmp_path / "other"
    for domain, data in make_tiny_pair(seed=5).items():
        write_domain(domain_paths(other)[domain], data)
    trial = _copy_trial(tiny_trial, tmp_path)
    for argv, message in ((["--alpha", "1.5"], "--alpha"), (["--alpha", "nan"], "--alpha"),
                          (["--data", str(other)], "is not the data"),
                          (["--device", "bogus"], "--device bogus")):
        assert fit_main(["--trial", str(trial), *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
        assert not (trial / OOD_REFERENCE_FILE).exists()
    assert fit_main(["--trial", str(tmp_path / "nothing")]) == 2
    assert "no such trial folder" in capsys.readouterr().err
