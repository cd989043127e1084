"""Prediction (apply/predict.py): the four input formats, ensembles, bad inputs, atomicity.

The models are real trials of ``make_runs`` (tests/test_analysis.py, shared session cache);
probabilities are recomputed here from the checkpoint with the network built from scratch,
so the catalogue is checked against the model's own outputs, not against the code under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from test_analysis import make_runs

from apply.predict import main as predict_main
from galaxies.cutouts import read_cutouts
from galaxies.schema import FILTERS, domain_paths, load_domain_arrays
from models import create_classifier
from search.results import load_search
from search.selection import rank_trials
from training.config import TrainConfig

N_OBJECTS = 12


@pytest.fixture(scope="session")
def runs(tiny_domain_pair, tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)


@pytest.fixture(scope="session")
def search_dir(runs) -> Path:
    return runs / "search" / "mmd_deepmerge"


@pytest.fixture(scope="session")
def ranked_trials(search_dir) -> list[Path]:
    return [Path(p) for p in rank_trials(load_search(search_dir))["trial_dir"]]


@pytest.fixture(scope="session")
def images(tiny_domain_pair) -> np.ndarray:
    target = load_domain_arrays(domain_paths(tiny_domain_pair)["target"])
    return target.images[:N_OBJECTS].astype(np.float32)


def reference_prob(trial_dir: Path, images: np.ndarray) -> np.ndarray:
    """p_merger of the trial's target network, recomputed independently of training/inference."""
    state = torch.load(trial_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    network = create_classifier(TrainConfig.from_dict(state["config"]))
    network.load_state_dict(state.get("target_model", state["model"]))
    network.eval()
    stats = state["target_channel_stats"]
    mean = np.asarray(stats["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(stats["std"], dtype=np.float32)[:, None, None]
    with torch.no_grad():
        logits = network(torch.from_numpy((images - mean) / std)).double()
    return torch.softmax(logits, dim=1)[:, 1].numpy()


def run(*argv) -> int:
    return predict_main([str(a) for a in argv] + ["--quiet"])


def catalogue(out: Path) -> pd.DataFrame:
    csv = pd.read_csv(out / "catalogue.csv", dtype={"object_id": str})
    parquet = pd.read_parquet(out / "catalogue.parquet")
    pd.testing.assert_frame_equal(csv[["object_id", "p_merger"]],
                                  parquet[["object_id", "p_merger"]], check_dtype=False)
    return csv


# --- the four formats ------------------------------------------------------------------------


def write_inputs(folder: Path, images: np.ndarray, tiny_domain_pair: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"hdf5": domain_paths(tiny_domain_pair)["target"]}
    np.save(folder / "cutouts.npy", images.transpose(0, 2, 3, 1))  # channels-last
    paths["npy"] = folder / "cutouts.npy"
    ids = [f"obj-{i:03d}" for i in range(len(images))]
    hdus = [fits.PrimaryHDU()]
    for channel in (2, 0, 1):  # out of order: the EXTNAMEs say which filter is which
        hdu = fits.ImageHDU(images[:, channel], name=FILTERS[channel].split()[-1])
        hdus.append(hdu)
    hdus.append(fits.BinTableHDU.from_columns([fits.Column("OBJECT_ID", "20A", array=ids)]))
    fits.HDUList(hdus).writeto(folder / "cube.fits")
    paths["fits-cube"] = folder / "cube.fits"
    cutout_dir = folder / "cutouts"
    cutout_dir.mkdir()
    for i, image in enumerate(images):
        if i % 2:  # one HDU of [3, 75, 75]
            fits.PrimaryHDU(image).writeto(cutout_dir / f"{ids[i]}.fits")
        else:      # one HDU per filter
            fits.HDUList([fits.PrimaryHDU(image[0]), fits.ImageHDU(image[1]),
                          fits.ImageHDU(image[2])]).writeto(cutout_dir / f"{ids[i]}.fits")
    paths["fits-folder"] = cutout_dir
    return paths


def test_every_format_from_a_trial(ranked_trials, images, tiny_domain_pair, tmp_path):
    trial = ranked_trials[0]
    expected = reference_prob(trial, images)
    paths = write_inputs(tmp_path / "in", images, tiny_domain_pair)
    for fmt, path in paths.items():
        out = tmp_path / f"cat_{fmt}"
        assert run("--trial", trial, "--images", path, "--out", out) == 0
        frame = catalogue(out)
        meta = json.loads((out / "catalogue.json").read_text())
        assert meta["input"]["format"] == fmt
        if fmt == "hdf5":  # all 40 rows, galaxy ids kept (augmented copies: id_row)
            data = load_domain_arrays(path)
            assert len(frame) == len(data.labels)
            assert frame["galaxy_id"].tolist() == data.galaxy_id.tolist()
            assert frame["label"].tolist() == data.labels.tolist()
            frame = frame.iloc[:N_OBJECTS]
        else:
            assert len(frame) == N_OBJECTS
        if fmt in ("fits-cube", "fits-folder"):
            assert frame["object_id"].tolist() == [f"obj-{i:03d}" for i in range(N_OBJECTS)]
        elif fmt == "npy":
            assert frame["object_id"].tolist() == [str(i) for i in range(N_OBJECTS)]
        assert (frame["status"] == "ok").all()
        p = frame["p_merger"].to_numpy()
        assert ((p >= 0) & (p <= 1)).all()
        np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6, err_msg=fmt)
        assert (frame["p_merger_std"] == 0).all()  # k = 1: no spread
        assert (frame["predicted_merger"] == (p >= 0.5)).all()


def test_hdf5_split_and_threshold(ranked_trials, tiny_domain_pair, tmp_path):
    path = domain_paths(tiny_domain_pair)["target"]
    data = load_domain_arrays(path)
    out = tmp_path / "cat"
    assert run("--trial", ranked_trials[0], "--images", path, "--split", "test",
               "--threshold", "0.9", "--out", out) == 0
    frame = catalogue(out)
    assert len(frame) == int((data.split == 2).sum()) and set(frame["split"]) == {"test"}
    assert (frame["predicted_merger"] == (frame["p_merger"] >= 0.9)).all()
    assert (frame["threshold"] == 0.9).all()


def test_top3_ensemble_from_a_search(search_dir, ranked_trials, images, tmp_path):
    np.save(tmp_path / "x.npy", images)
    out = tmp_path / "cat"
    assert run("--search", search_dir, "--top-k", 3, "--images", tmp_path / "x.npy",
               "--out", out) == 0
    frame = catalogue(out)
    members = np.stack([reference_prob(t, images) for t in ranked_trials[:3]])
    for i in range(3):
        np.testing.assert_allclose(frame[f"p_merger_{i}"], members[i], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frame["p_merger"], members.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frame["p_merger_std"], members.std(0), rtol=1e-4, atol=1e-6)
    assert (frame["p_merger_std"] > 0).any()
    meta = json.loads((out / "catalogue.json").read_text())
    assert [m["rank"] for m in meta["models"]] == [1, 2, 3]
    assert [Path(m["trial_dir"]).name for m in meta["models"]] == [t.name for t in
                                                                   ranked_trials[:3]]
    assert meta["selection"]["strategy"] == "search" and not meta["selection"]["oracle"]


def test_top_k_larger_than_the_search_is_refused(search_dir, images, tmp_path, capsys):
    np.save(tmp_path / "x.npy", images)
    assert run("--search", search_dir, "--top-k", 9, "--images", tmp_path / "x.npy",
               "--out", tmp_path / "cat") == 2
    assert "fewer than --top-k 9" in capsys.readouterr().err
    assert not (tmp_path / "cat").exists()


# --- bad inputs -------------------------------------------------------------------------------


def bad_inputs(folder: Path, images: np.ndarray) -> dict[str, tuple[Path, str]]:
    folder.mkdir()
    cases = {}
    np.save(folder / "small.npy", images[:, :, :64, :64])
    cases["shape"] = (folder / "small.npy", "expected [N, 3, 75, 75]")
    np.save(folder / "four.npy", np.concatenate([images, images[:, :1]], axis=1))
    cases["filters"] = (folder / "four.npy", "have 4 filters, the models need 3")
    nan = images.copy()
    nan[3, 1, 10, 10] = np.nan
    np.save(folder / "nan.npy", nan)
    cases["nan"] = (folder / "nan.npy", "NaN, inf or |pixel| > 1e+10 in 1 image(s) (rows 3)")
    inf = images.copy()
    inf[5, 0, 0, 0] = np.inf
    fits.PrimaryHDU(inf).writeto(folder / "inf.fits")
    cases["inf fits"] = (folder / "inf.fits",
                         "NaN, inf or |pixel| > 1e+10 in 1 image(s) (rows 5)")
    for name, value in (("1e30", 1e30), ("3e38", 3e38)):  # once p = 1.0 or NaN marked ok
        huge = images.copy()
        huge[2, 0, 5, 5] = value
        np.save(folder / f"huge_{name}.npy", huge)
        cases[f"pixel {name}"] = (folder / f"huge_{name}.npy",
                                  "NaN, inf or |pixel| > 1e+10 in 1 image(s) (rows 2)")
    (folder / "garbage.fits").write_bytes(b"not a fits file at all" * 40)
    cases["unreadable fits"] = (folder / "garbage.fits", "unreadable FITS file")
    (folder / "garbage.h5").write_bytes(b"\x00junk" * 100)
    cases["unreadable hdf5"] = (folder / "garbage.h5", "unreadable HDF5 file")
    (folder / "garbage.npy").write_bytes(b"\x93NUMPY junk")
    cases["unreadable npy"] = (folder / "garbage.npy", "unreadable .npy file")
    np.save(folder / "complex.npy", images.astype(np.complex64))
    cases["complex"] = (folder / "complex.npy", "not real numbers")
    (folder / "table.csv").write_text("a,b\n")
    cases["format"] = (folder / "table.csv", "unknown image format")
    cases["missing"] = (folder / "nope.npy", "does not exist")
    (folder / "empty_dir").mkdir()
    cases["empty folder"] = (folder / "empty_dir", "holds no FITS files")
    return cases


def test_bad_inputs_have_their_own_message(ranked_trials, images, tmp_path, capsys):
    for name, (path, message) in bad_inputs(tmp_path / "bad", images).items():
        out = tmp_path / f"cat_{name.replace(' ', '_')}"
        assert run("--trial", ranked_trials[0], "--images", path, "--out", out) == 2, name
        err = capsys.readouterr().err
        assert message in err, (name, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert not out.exists(), name
    assert not list(tmp_path.glob(".cat*")), "temporary folders left behind"


def test_bad_models_and_arguments(ranked_trials, images, runs, tmp_path, capsys):
    np.save(tmp_path / "x.npy", images)
    x = tmp_path / "x.npy"
    broken = tmp_path / "broken"
    shutil.copytree(ranked_trials[0], broken)
    (broken / "checkpoint.pt").write_bytes(b"truncated")
    failed = next((runs / "search" / "mmd_resnet" / "trials").iterdir())
    cases = [
        (["--trial", tmp_path / "nope"], "no such trial folder"),
        (["--trial", broken], "unreadable checkpoint"),
        (["--trial", failed], "not 'ok'"),
        (["--search", tmp_path], "not a search log folder"),
        (["--trial", ranked_trials[0], "--threshold", "1.5"], "--threshold must be in [0, 1]"),
        (["--trial", ranked_trials[0], "--calibrated"], "no calibration.json"),
        (["--trial", ranked_trials[0], "--top-k", "2"], "--top-k applies to --search only"),
    ]
    for argv, message in cases:
        assert run(*argv, "--images", x, "--out", tmp_path / "cat") == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert not (tmp_path / "cat").exists()


def test_a_bad_object_in_a_folder_is_flagged(ranked_trials, images, tmp_path):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    for i, image in enumerate(images[:6]):
        fits.PrimaryHDU(image).writeto(folder / f"g{i}.fits")
    bad = images[0].copy()
    bad[0, 0, 0] = np.nan
    fits.PrimaryHDU(bad).writeto(folder / "g_nan.fits")
    fits.PrimaryHDU(images[0][:2]).writeto(folder / "g_two_filters.fits")
    (folder / "g_truncated.fits").write_bytes((folder / "g0.fits").read_bytes()[:100])
    out = tmp_path / "cat"
    assert run("--trial", ranked_trials[0], "--images", folder, "--out", out) == 0
    frame = catalogue(out).set_index("object_id")
    assert len(frame) == 9
    assert frame.loc["g_nan", "status"] == "bad: NaN, inf or |pixel| > 1e+10 in 1 image(s) (rows 0)"
    assert "2 image HDU(s)" in frame.loc["g_two_filters", "status"] or \
        "filters" in frame.loc["g_two_filters", "status"]
    assert frame.loc["g_truncated", "status"].startswith("bad: ")
    flagged = frame[frame["status"] != "ok"]
    assert len(flagged) == 3 and flagged["p_merger"].isna().all()
    assert flagged["predicted_merger"].isna().all()
    ok = frame.loc[[f"g{i}" for i in range(6)]]
    np.testing.assert_allclose(ok["p_merger"], reference_prob(ranked_trials[0], images[:6]),
                               rtol=1e-5, atol=1e-6)
    meta = json.loads((out / "catalogue.json").read_text())
    assert meta["input"]["n_unclassified"] == 3 and meta["input"]["n_classified"] == 6


def test_no_partial_catalogue_after_a_failure(ranked_trials, images, tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", images)
    out = tmp_path / "cat"
    assert run("--trial", ranked_trials[0], "--images", tmp_path / "x.npy", "--out", out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run("--trial", ranked_trials[0], "--images", tmp_path / "x.npy", "--out", out) == 2

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    for target in (out, tmp_path / "fresh"):
        assert run("--trial", ranked_trials[0], "--images", tmp_path / "x.npy", "--out", target,
                   "--force") == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old catalogue intact
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat", "x.npy"]


def test_read_cutouts_keeps_fits_table_ids_and_filter_order(images, tiny_domain_pair, tmp_path):
    paths = write_inputs(tmp_path, images, tiny_domain_pair)
    cube = read_cutouts(paths["fits-cube"])
    np.testing.assert_array_equal(cube.images, images)  # EXTNAMEs reordered the filters
    assert cube.object_id[0] == "obj-000"
    npy = read_cutouts(paths["npy"])
    np.testing.assert_array_equal(npy.images, images)  # channels-last transposed


def test_force_replaces_only_a_catalogue_folder(ranked_trials, images, tmp_path):
    """--force never removes a folder predict.py did not write (images, a trial, data)."""
    import subprocess
    import sys

    np.save(tmp_path / "x.npy", images)
    trial_copy = tmp_path / "trial"
    shutil.copytree(ranked_trials[0], trial_copy)
    inputs_folder = tmp_path / "inputs"
    inputs_folder.mkdir()
    np.save(inputs_folder / "y.npy", images)
    repo = Path(__file__).resolve().parents[1]
    for out in (inputs_folder, trial_copy, tmp_path):
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        proc = subprocess.run(
            [sys.executable, "apply/predict.py", "--trial", str(trial_copy), "--images",
             str(tmp_path / "x.npy"), "--out", str(out), "--force", "--quiet"],
            cwd=repo, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "not a catalogue folder" in lines[0], proc.stderr
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing lost
    # Its own catalogue folder is replaced, and nothing temporary is left beside it.
    out = tmp_path / "cat"
    assert run("--trial", trial_copy, "--images", tmp_path / "x.npy", "--out", out) == 0
    assert run("--trial", trial_copy, "--images", tmp_path / "x.npy", "--out", out,
               "--force") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["catalogue.csv", "catalogue.json", "catalogue.parquet"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_calibration_must_be_finite_positive_and_for_this_checkpoint(ranked_trials, images,
                                                                   tmp_path, capsys):
    """A temperature of 0, NaN, -1 or none, or one fitted for another checkpoint: refused."""
    from apply.calibrate import calibrate_trial

    trial = tmp_path / "trial"
    shutil.copytree(ranked_trials[0], trial)
    np.save(tmp_path / "x.npy", images)
    calibrate_trial(trial)
    good = json.loads((trial / "calibration.json").read_text())
    assert run("--trial", trial, "--images", tmp_path / "x.npy", "--out", tmp_path / "ok",
               "--calibrated") == 0
    capsys.readouterr()
    cases = {"zero": {**good, "temperature": 0.0}, "nan": {**good, "temperature": "NaN"},
             "negative": {**good, "temperature": -1.0},
             "missing": {k: v for k, v in good.items() if k != "temperature"},
             "stale": {**good, "checkpoint_sha256": "0" * 64}}
    for name, payload in cases.items():
        (trial / "calibration.json").write_text(json.dumps(payload).replace('"NaN"', "NaN"))
        out = tmp_path / f"cat_{name}"
        assert run("--trial", trial, "--images", tmp_path / "x.npy", "--out", out,
                   "--calibrated") == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "calibrate.py" in err[0], (name, err)
        assert not out.exists()


def test_nonfinite_outputs_are_flagged_never_ok(ranked_trials, images, tmp_path, monkeypatch):
    """If the network gives NaN for a row, that row is flagged, never ``ok`` with NaN."""
    from apply import inference

    np.save(tmp_path / "x.npy", images)
    original = inference.TrainedModel.logits

    def some_nan(self, x, *args, **kwargs):
        logits = original(self, x, *args, **kwargs)
        logits[1] = np.nan
        return logits

    monkeypatch.setattr(inference.TrainedModel, "logits", some_nan)
    out = tmp_path / "cat"
    assert run("--trial", ranked_trials[0], "--images", tmp_path / "x.npy", "--out", out) == 0
    frame = catalogue(out)
    assert frame.loc[1, "status"].startswith("bad:") and np.isnan(frame.loc[1, "p_merger"])
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == len(images) - 1 and np.isfinite(ok["p_merger"]).all()
    meta = json.loads((out / "catalogue.json").read_text())
    assert meta["input"]["n_unclassified"] == 1


def test_search_results_are_read_strictly(search_dir, images, tmp_path, capsys):
    """A duplicated job id or non-UTF-8 bytes in results.csv: one line, no catalogue."""
    np.save(tmp_path / "x.npy", images)
    text = (search_dir / "results.csv").read_text()
    lines = text.splitlines(keepends=True)
    for name, content in (("duplicate", text + lines[1]),
                          ("bytes", text.encode() + b"\xff\xfe\x00\n")):
        copy = tmp_path / name
        shutil.copytree(search_dir, copy)
        data = content if isinstance(content, bytes) else content.encode()
        (copy / "results.csv").write_bytes(data)
        out = tmp_path / f"cat_{name}"
        assert run("--search", copy, "--top-k", "2", "--images", tmp_path / "x.npy",
                   "--out", out) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err
        assert not out.exists()


def test_a_missing_cuda_device_and_a_wrong_network_get_one_plain_line(ranked_trials, images,
                                                                       tmp_path, capsys):
    np.save(tmp_path / "x.npy", images)
    if not torch.cuda.is_available():
        assert run("--trial", ranked_trials[0], "--images", tmp_path / "x.npy", "--out",
                   tmp_path / "a", "--device", "cuda:7") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no such CUDA device" in err[0] and "rerun" not in err[0]
    wrong = tmp_path / "wrong"
    shutil.copytree(ranked_trials[0], wrong)
    state = torch.load(wrong / "checkpoint.pt", weights_only=True)
    state["config"]["backbone"] = "resnet18"  # a checkpoint of another architecture
    torch.save(state, wrong / "checkpoint.pt")
    assert run("--trial", wrong, "--images", tmp_path / "x.npy", "--out", tmp_path / "b") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0], err
