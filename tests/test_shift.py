"""The shift statistics, the shift meter (apply/shift.py) and the atlas command (issue 26)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from apply import shift
from galaxies import shift_stats
from galaxies.simulate import noise_sigma

REPO = Path(__file__).resolve().parents[1]
ATLAS = REPO / "reports" / "atlas"


def test_the_noise_depth_is_read_back_from_pure_noise():
    rng = np.random.default_rng(0)
    for sb in (23.0, 25.0, 27.0):
        images = rng.normal(0, noise_sigma(sb), size=(40, 3, 75, 75))
        got = shift_stats.limiting_sb(shift_stats.noise_sigma(images))
        assert np.median(got) == pytest.approx(sb, abs=0.05)
    assert shift_stats.limiting_sb(0.0) == shift_stats.NOISELESS_SB


def test_the_size_grows_with_the_psf():
    import galsim

    sizes = []
    for fwhm in (0.1, 0.15, 0.2):
        image = galsim.Gaussian(fwhm=fwhm).drawImage(nx=75, ny=75, scale=0.04).array
        sizes.append(shift_stats.light_size(image[None, None])[0, 0])
    assert sizes[0] < sizes[1] < sizes[2]
    assert sizes[2] / sizes[0] == pytest.approx(2.0, rel=0.05)
    assert np.isnan(shift_stats.light_size(np.zeros((1, 1, 75, 75))))[0, 0]


def simulate(out: Path, sb: float, psf: float, seed: int = 5, n: int = 250) -> Path:
    subprocess.run([sys.executable, "galaxies/simulate.py", "--out", str(out), "--n-mergers",
                    str(n), "--n-nonmergers", str(n), "--seed", str(seed), "--limiting-sb",
                    str(sb), "--target-psf-scale", str(psf), "--workers", "1", "--quiet"],
                   cwd=REPO, check=True)
    return out


@pytest.mark.parametrize(("sb", "psf", "cells"), [
    (24.0, 1.0, {"sb24"}), (26.0, 1.0, {"sb26"}), (25.0, 1.5, {"sb25-psf1.5", "sb25-psf1.25"})])
def test_the_meter_names_the_cell_of_simulated_images(tmp_path, sb, psf, cells):
    """Images simulated at a cell (another data seed, few images) are read as that cell."""
    data = simulate(tmp_path / "pair", sb, psf)
    result = shift.measure(data / "target.h5", ATLAS)
    place = result["reading"]
    assert not place["outside"] and not result["verdict"]["outside"], place["reasons"]
    assert place["sb_lim"] == pytest.approx(sb, abs=0.1)
    assert place["cell"] in cells or place["neighbour"] in cells
    if psf == 1.0:
        assert place["cell"] in cells
    source = shift.measure(data / "source.h5", ATLAS)["reading"]
    assert source["cell"] == "source" and not source["outside"]
    # A set of only mergers or only non-mergers (a catalogue's mix is not the simulation's;
    # the file's first rows are all mergers) is read as the same cell: the seeing comes from
    # the light's core, not from the whole system's size (review finding).
    with h5py.File(data / "target.h5") as handle:
        images, labels = handle["images"][:], handle["labels"][:]
    for label in (0, 1):
        np.save(tmp_path / f"class{label}.npy", images[labels == label])
        one = shift.measure(tmp_path / f"class{label}.npy", ATLAS)["reading"]
        assert not one["outside"], (label, one["reasons"])
        assert one["cell"] in cells or (psf != 1.0 and one["neighbour"] in cells), (label, one)


def test_other_units_are_outside(tmp_path, capsys):
    """An 8-bit stretch of simulated images (a JPEG's units) is outside the atlas."""
    data = simulate(tmp_path / "pair", 25.0, 1.0, n=40)
    with h5py.File(data / "target.h5") as handle:
        images = handle["images"][:]
    stretched = np.clip(np.arcsinh(images / 0.004) * 30 + 20, 0, 255).round()
    np.save(tmp_path / "stretched.npy", stretched.astype(np.float32))
    assert shift.main(["--images", str(tmp_path / "stretched.npy"), "--json",
                       str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "verdict: OUTSIDE" in out and "noise depth" in out
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["reading"]["outside"] is True and saved["verdict"]["outside"] is True


def test_bad_inputs_get_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    atlas = tmp_path / "atlas"
    atlas.mkdir()
    cases = [["--images", str(tmp_path / "missing.h5")],
             ["--images", str(tmp_path / "bad.npy")],
             ["--images", str(tmp_path / "bad.npy"), "--atlas", str(atlas)]]
    for argv in cases:
        assert shift.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    (atlas / "cells.json").write_text("{}")
    assert shift.main(["--images", str(tmp_path / "bad.npy"), "--atlas", str(atlas)]) == 2
    assert "Fix: run python analysis/shift_atlas.py" in capsys.readouterr().err


def test_more_bad_inputs_get_one_line_and_exit_2(tmp_path, capsys, tiny_trial):
    """Review findings: NaN pixels, wrong shapes, a pickle, a bad trial (refused before the
    images are read, garbage checkpoint included) and an unwritable --json: one line, exit 2,
    no report and no traceback."""
    import shutil

    rng = np.random.default_rng(3)
    good = rng.normal(0, noise_sigma(25.0), (5, 3, 75, 75)).astype(np.float32)
    nan = good.copy()
    nan[:, :, 10, 10] = np.nan
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "shape.npy", good[:, :, :64, :64])
    np.save(tmp_path / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    garbage = tmp_path / "garbage"
    shutil.copytree(tiny_trial, garbage)
    (garbage / "checkpoint.pt").write_bytes(b"not a checkpoint")
    record_only = tmp_path / "record_only"
    record_only.mkdir()
    shutil.copy(tiny_trial / "record.json", record_only / "record.json")
    cases = {"nan": ["--images", str(tmp_path / "nan.npy")],
             "shape": ["--images", str(tmp_path / "shape.npy")],
             "pickle": ["--images", str(tmp_path / "pickle.npy")],
             "trial": ["--images", str(tmp_path / "missing.h5"), "--trial",
                       str(tmp_path / "nowhere")],
             "garbage": ["--images", str(tmp_path / "missing.h5"), "--trial", str(garbage)],
             "record_only": ["--images", str(tmp_path / "missing.h5"), "--trial",
                             str(record_only)],
             "json": ["--images", str(tmp_path / "good.npy"), "--json", "/proc/shift.json"]}
    for name, argv in cases.items():
        assert shift.main(argv) == 2, name
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, \
            (name, captured.err)
        assert "Traceback" not in captured.err and captured.out == "", (name, captured.out)
        if name in ("trial", "garbage", "record_only"):  # the trial, not the missing images
            assert "missing.h5" not in captured.err, (name, captured.err)


def fake_atlas() -> dict:
    size = {1.0: [3.6, 2.6, 4.2], 1.25: [3.9, 2.9, 4.9], 1.5: [4.1, 3.2, 5.5]}
    cells = {f"sb{sb}": {"limiting_sb": float(sb), "psf_scale": 1.0,
                         "target": {"size": size[1.0], "core": size[1.0]}}
             for sb in (23, 24, 25, 26, 27)}
    cells.update({f"sb25-psf{p:g}": {"limiting_sb": 25.0, "psf_scale": p,
                                    "target": {"size": size[p], "core": size[p]}}
                  for p in (1.25, 1.5)})
    return {"cells": cells, "rows": [], "source": None}


def test_readings_on_a_fake_atlas():
    atlas = fake_atlas()

    def read(sb, size, ok=1.0):
        return shift.reading({"n": 500, "sb_lim": sb, "size": size, "core": size,
                              "size_ok": [ok] * 3}, atlas)

    mid = read([25.0] * 3, [3.75, 2.75, 4.55])  # half-way between x1 and x1.25
    assert mid["psf_scale"] == pytest.approx(1.125, abs=0.01)
    assert {mid["cell"], mid["neighbour"]} == {"sb25", "sb25-psf1.25"}
    assert read([21.0] * 3, [3.6, 2.6, 4.2])["outside"]
    assert read([23.0, 25.0, 27.0], [3.6, 2.6, 4.2])["outside"]  # filters disagree
    assert read([25.0] * 3, [3.6, 2.6, 4.2], ok=0.1)["outside"]
    assert not read([25.0] * 3, [3.6, 2.6, 4.2], ok=0.3)["outside"]
    far = read([23.0] * 3, [4.1, 3.2, 5.5])  # deep-axis depth with bad seeing: off the cross
    assert far["outside"] and "between the atlas's axes" in far["reasons"][0]
    assert read([38.0, 32.0, 33.0], [3.6, 2.6, 4.2])["cell"] == "source"
    assert math.isfinite(read([27.4] * 3, [3.6, 2.6, 4.2])["psf_scale"])
    # The seeing's error is the class-mix systematic alone where the sizes carry no error.
    bare = {"n": 500, "sb_lim": [25.0] * 3, "size": [3.75, 2.75, 4.55],
            "core": [3.75, 2.75, 4.55]}
    assert shift.reading(bare, atlas)["psf_scale_err"] == pytest.approx(shift.SEEING_CLASS_MIX)
    assert shift.reading(bare, atlas, class_mix=0.0)["psf_scale_err"] == 0.0
    assert shift.reading(bare, atlas, class_mix=0.2)["psf_scale_err"] == pytest.approx(0.2)


def test_the_atlas_dry_run_lists_every_cell_and_method():
    from analysis import shift_atlas
    from analysis.headline import HELD_OUT_DATA_SEEDS

    proc = subprocess.run([sys.executable, "analysis/shift_atlas.py", "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    simulations = [line for line in lines if line.startswith("python galaxies/simulate.py")]
    assert len(simulations) == len(shift_atlas.CELLS) == 7
    assert any("--limiting-sb 23 --target-psf-scale 1 " in line for line in simulations)
    assert any("--limiting-sb 25 --target-psf-scale 1.5 " in line for line in simulations)
    assert all(f"--seed {shift_atlas.ATLAS_DATA_SEED} " in line for line in simulations)
    assert shift_atlas.ATLAS_DATA_SEED in HELD_OUT_DATA_SEEDS
    trainings = [line for line in lines if line.startswith("python search/seeds.py")]
    newer = shift_atlas.newer_method(REPO / shift_atlas.SEARCHES)
    assert len(trainings) == 7 * (len(shift_atlas.METHODS) + (newer is not None)) * 3
    assert shift_atlas.SEEDS == 3
    assert all("--from-search reports/paper/searches/" in line for line in trainings)
    oracle = [line for line in trainings if "--problem oracle_deepmerge " in line]
    assert all("searches/none_deepmerge --shared-config" in line for line in oracle)
    assert lines[-1] == ("python analysis/shift_atlas.py --tables-only --reports reports/atlas "
                         "--readme README.md")  # the default run refreshes README's block


def test_the_meter_with_a_trial_reports_its_flags_and_adapted_domain(tiny_trial,
                                                                      tiny_domain_pair,
                                                                      tmp_path, capsys):
    import shutil

    from apply.fit_ood import fit_trial

    trial = tmp_path / "trial"
    shutil.copytree(tiny_trial, trial)
    images = str(tiny_domain_pair / "target.h5")
    result = shift.measure(images, ATLAS, trial)
    assert result["model"]["ood"]["note"].startswith("no OOD reference")
    reference = fit_trial(trial, tiny_domain_pair)
    assert shift.main(["--images", images, "--trial", str(trial), "--json",
                       str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "model: none_deepmerge" in out and "out-of-distribution flag" in out
    saved = json.loads((tmp_path / "r.json").read_text())["model"]
    assert saved["ood"]["alpha"] == reference.alpha
    assert 0.0 <= saved["ood"]["flagged"] <= 1.0
    assert 0.0 <= saved["ood"]["auc"] <= 1.0 and 0.0 <= saved["ood"]["p_value"] <= 1.0
    assert "one-sided Mann-Whitney p" in out
    (trial / "ood_reference.npz").write_bytes(b"broken")
    assert shift.main(["--images", images, "--trial", str(trial)]) == 2
    assert "Fix: rerun python apply/fit_ood.py" in capsys.readouterr().err


def test_the_meter_quotes_the_atlas_accuracy_of_the_resembled_cell(tmp_path, capsys,
                                                                   tiny_domain_pair):
    """Review finding: without a model the meter printed no accuracy; now every arm's, from
    atlas.json, for the cell the images resemble (and "not measured yet" before it exists)."""
    import shutil

    data = simulate(tmp_path / "pair", 26.0, 1.0, n=120)
    atlas = tmp_path / "atlas"
    atlas.mkdir()
    shutil.copy(ATLAS / "cells.json", atlas / "cells.json")
    images = str(data / "target.h5")
    assert shift.main(["--images", images, "--atlas", str(atlas)]) == 0
    assert "atlas target accuracy in sb26: not measured yet" in capsys.readouterr().out
    rows = [{"cell": cell, "arm": arm, "seeds": [1, 2, 3],
             "target": {"mean": mean, "std": 0.01}}
            for cell in ("sb25", "sb26") for arm, mean in (("none", 0.61), ("mmd", 0.8),
                                                          ("oracle", 0.9))]
    rows[4]["target"]["mean"] = 0.777  # sb26 MMD
    (atlas / "atlas.json").write_text(json.dumps({"rows": rows}))
    result = shift.measure(images, atlas)
    assert result["reading"]["cell"] == "sb26"
    assert set(result["atlas_accuracy"]) == {"none", "mmd", "oracle"}
    assert shift.main(["--images", images, "--atlas", str(atlas)]) == 0
    out = capsys.readouterr().out
    assert "atlas target accuracy in sb26" in out and "  mmd: 77.7 ± 1.0 % (3 seeds)" in out
    # --search: the search's label-free pick is the model (and excludes --trial)
    from search.run import main as search_main

    log = tmp_path / "search"
    assert search_main(["--problem", "mmd_deepmerge", "--log-dir", str(log), "--max-evals", "1",
                        "--data", str(tiny_domain_pair), "--evaluator", "serial", "--search",
                        "random", "--quiet", "--set", "epochs=1", "--set",
                        "max_batches_per_epoch=2"]) == 0
    assert shift.main(["--images", images, "--atlas", str(atlas), "--search", str(log)]) == 0
    out = capsys.readouterr().out
    assert "model: mmd_deepmerge" in out and "mmd: 77.7 ± 1.0 % (3 seeds)  <- this model" in out
    with pytest.raises(SystemExit):
        shift.main(["--images", images, "--trial", str(log), "--search", str(log)])
    assert shift.main(["--images", images, "--search", str(tmp_path)]) == 2
    assert "not a search log folder" in capsys.readouterr().err


def test_raw_hubble_stamps_are_outside(tmp_path, capsys):
    """Real Hubble pixels (scikit-image's HDF, offline) in their 8-bit units: outside on the
    physical reading alone (tests/test_ood.py: rescaled ones, outside by the model's flags)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from ood_check import hubble_stamps

    np.save(tmp_path / "raw.npy", hubble_stamps(60))
    assert shift.main(["--images", str(tmp_path / "raw.npy")]) == 0
    out = capsys.readouterr().out
    assert "verdict: OUTSIDE" in out and "beyond the atlas's 23-27" in out
    # docs/APPLY.md: "raw 8-bit Hubble stamps read as SB_lim ≈ 17"
    assert 16.5 < shift.measure(tmp_path / "raw.npy", ATLAS)["reading"]["sb_lim"] < 17.5


def test_blank_constant_mixed_and_pedestal_images_are_outside(tmp_path):
    """Review findings: none of these may read as the source domain or a cell."""
    rng = np.random.default_rng(0)
    sigma = noise_sigma(25.0)
    mixed = np.zeros((120, 3, 75, 75), np.float32)
    mixed[:, 0] = rng.normal(0, sigma, (120, 75, 75))
    cases = {"blank": np.zeros((20, 3, 75, 75), np.float32),
             "constant": np.full((20, 3, 75, 75), 5.0, np.float32),
             "mixed": mixed,
             "pedestal": (rng.normal(0, sigma, (40, 3, 75, 75)) + 0.05).astype(np.float32)}
    for name, images in cases.items():
        np.save(tmp_path / f"{name}.npy", images)
        result = shift.measure(tmp_path / f"{name}.npy", ATLAS)
        assert result["verdict"]["outside"], name
    pedestal = shift.measure(tmp_path / "pedestal.npy", ATLAS)["verdict"]["reasons"]
    assert any("sky is not subtracted" in reason for reason in pedestal)


def test_few_images_do_not_read_the_seeing_and_json_is_strict(tmp_path):
    data = simulate(tmp_path / "pair", 25.0, 1.0, n=20)
    with h5py.File(data / "target.h5") as handle:
        np.save(tmp_path / "few.npy", handle["images"][:3])
    result = shift.measure(tmp_path / "few.npy", ATLAS)
    place = result["reading"]
    assert place["psf_scale"] is None and "seeing not read" in place["seeing_note"]
    assert place["cell"] == "sb25" and not result["verdict"]["outside"]
    # Review finding: without the seeing the images are not placed, never "inside".
    assert result["verdict"]["inside"] is False
    assert "verdict: not placed" in shift.report(result)
    rng = np.random.default_rng(1)
    np.save(tmp_path / "noise.npy", rng.normal(0, noise_sigma(25.0), (10, 3, 75, 75)))
    assert shift.main(["--images", str(tmp_path / "noise.npy"), "--json",
                       str(tmp_path / "n.json")]) == 0
    json.loads((tmp_path / "n.json").read_text(), parse_constant=lambda c: 1 / 0)  # no NaN


def test_a_bad_atlas_is_one_line(tmp_path, capsys):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "x.npy", rng.normal(0, noise_sigma(25.0), (5, 3, 75, 75)))
    good = json.loads((ATLAS / "cells.json").read_text())

    def atlas(name, cells=None, table=None):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cells.json").write_text(json.dumps(cells if cells is not None else good))
        if table is not None:
            (folder / "atlas.json").write_text(table)
        return folder

    two = json.loads(json.dumps(good))
    two["cells"]["sb24"]["target"]["size"] = [3.0, 2.0]
    flat = json.loads(json.dumps(good))
    seeing = shift.SEEING_STAT  # the PSF cells' seeing statistic must grow with the PSF
    flat["cells"]["sb25-psf1.5"]["target"][seeing] = flat["cells"]["sb25"]["target"][seeing]
    no_ref = json.loads(json.dumps(good))
    del no_ref["cells"]["sb25"]
    folders = [atlas("list", {"cells": [1, 2]}), atlas("two", two), atlas("flat", flat),
               atlas("noref", no_ref), atlas("table", table="{not json")]
    for folder in folders:
        assert shift.main(["--images", str(tmp_path / "x.npy"), "--atlas", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (folder.name, err)
    assert shift.main(["--images", str(tmp_path / "x.npy"), "--json",
                       str(tmp_path / "nodir" / "x.json")]) == 2
    assert "--json" in capsys.readouterr().err


def test_the_newer_method_is_chosen_on_development_data(tmp_path):
    """Of the five newer methods, the one whose search's label-free pick has the highest
    target validation accuracy on development data; none until all five are committed."""
    from analysis import shift_atlas
    from analysis.paper_study import NEWER

    for i, problem in enumerate(NEWER[:-1]):
        (tmp_path / problem).mkdir()
        (tmp_path / problem / "selection.json").write_text(json.dumps(
            {"label_free": {"target_val_accuracy": 70.0 + i}}))
    assert shift_atlas.newer_method(tmp_path) is None
    (tmp_path / NEWER[-1]).mkdir()
    (tmp_path / NEWER[-1] / "selection.json").write_text(json.dumps(
        {"label_free": {"target_val_accuracy": 60.0}}))
    assert shift_atlas.newer_method(tmp_path) == NEWER[-2]
    jobs = shift_atlas.atlas_jobs(tmp_path / "runs", ["sb25"], NEWER[-2])
    assert sum(f"--problem {NEWER[-2]} " in " ".join(j.command) for j in jobs) == 3


def test_the_atlas_table_and_figure_from_fake_records(tmp_path, capsys):
    """analysis/shift_atlas.py --tables-only: per cell and method, the target accuracy and the
    share of the no-DA -> oracle gap; records of another data seed are refused."""
    import shutil

    from test_paper_tables import fake_seed

    from analysis import shift_atlas

    reports = tmp_path / "atlas"
    for cell, floor in (("sb23", 0.55), ("sb25", 0.65)):
        staging = tmp_path / f"staging_{cell}"
        for arm, rate in (("none", floor), ("mmd", 0.8), ("cdan", 0.75), ("oracle", 0.9)):
            for seed in (1, 2):
                fake_seed(staging, arm, seed, {"source": 0.9, "target": rate}, data_seed=21)
        shutil.copytree(staging / "seeds/data21/deepmerge", reports / "seeds" / cell)
    result = shift_atlas.build(reports)
    rows = {(r["cell"], r["arm"]): r for r in result["rows"]}
    mmd = rows[("sb23", "mmd")]
    floor = np.mean(rows[("sb23", "none")]["target"]["per_seed"])
    ceiling = np.mean(rows[("sb23", "oracle")]["target"]["per_seed"])
    assert mmd["oracle_gap_share"] == pytest.approx(
        (np.mean(mmd["target"]["per_seed"]) - floor) / (ceiling - floor))
    assert shift_atlas.main(["--tables-only", "--reports", str(reports)]) == 0
    table = (reports / "atlas.md").read_text()
    assert "| `sb23` | 23 | 1 |" in table and "not run yet" in table  # joint-BN, DANN
    head = table.splitlines()[0]
    assert head.index("DANN") < head.index("CDAN") < head.index("oracle (")  # a newer method
    assert (reports / "atlas.png").is_file() and (reports / "atlas.json").is_file()
    other = tmp_path / "other"
    fake_seed(tmp_path / "staging_other", "none", 1, {"source": 0.9, "target": 0.6},
              data_seed=11)
    shutil.copytree(tmp_path / "staging_other/seeds/data11/deepmerge", other / "seeds" / "sb24")
    assert shift_atlas.main(["--tables-only", "--reports", str(other)]) == 2
    assert "not the atlas's 21" in capsys.readouterr().err
    # the fair stopping rule holds in the atlas too: a run stopped early is refused
    early = tmp_path / "early"
    fake_seed(tmp_path / "staging_early", "none", 1, {"source": 0.9, "target": 0.6},
              data_seed=21, epochs_run=12, stopping="patience")
    shutil.copytree(tmp_path / "staging_early/seeds/data21/deepmerge", early / "seeds" / "sb24")
    assert shift_atlas.main(["--tables-only", "--reports", str(early)]) == 2
    assert "stopped before their schedule ended" in capsys.readouterr().err
    assert not (early / "atlas.json").exists()


def test_the_meter_reads_a_fits_folder(tmp_path):
    """Issue 26: the meter runs on a folder of FITS files (one object each) as on HDF5."""
    from astropy.io import fits

    data = simulate(tmp_path / "pair", 26.0, 1.0, n=100)
    with h5py.File(data / "target.h5") as handle:
        images = handle["images"][:160]
    folder = tmp_path / "fits"
    folder.mkdir()
    for i, image in enumerate(images):
        fits.PrimaryHDU(image).writeto(folder / f"obj{i:03d}.fits")
    result = shift.measure(folder, ATLAS)
    assert result["format"].startswith("fits") and result["n_measured"] == 160
    assert result["reading"]["cell"] == "sb26" and not result["verdict"]["outside"]


def test_the_feature_shift_test():
    """Set-level: the images' feature distances against the target validation images'."""
    rng = np.random.default_rng(0)
    validation = rng.chisquare(32, 300) ** 0.5
    same = shift.feature_shift(rng.chisquare(32, 200) ** 0.5, validation)
    assert 0.4 < same["auc"] < 0.6 and same["p_value"] > 0.01
    assert same["median_ratio"] == pytest.approx(1.0, abs=0.05)
    far = shift.feature_shift(1.5 * rng.chisquare(32, 200) ** 0.5, validation)
    assert far["auc"] > 0.9 and far["p_value"] < 1e-20 and far["median_ratio"] > 1.4
    inf = shift.feature_shift(np.full(10, np.inf), validation)  # non-finite features
    assert inf["auc"] == 1.0 and inf["median_ratio"] == math.inf


def fake_atlas_result(means: dict[tuple[str, str], float], seeds=(1, 2, 3),
                      one_class: dict[tuple[str, str], str] | None = None) -> dict:
    """An atlas result (``shift_atlas.build``'s shape) with the given target means."""
    from analysis import shift_atlas

    one_class = one_class or {}
    cells = {}
    for cell in {c for c, _ in means}:
        sb, psf = shift_atlas.CELLS[cell]
        both = (cell, "none") in means and (cell, "oracle") in means
        cells[cell] = {"limiting_sb": sb, "psf_scale": psf, "oracle_gap_seeds": list(seeds),
                       "oracle_gap": means[(cell, "oracle")] - means[(cell, "none")]
                       if both else None, "merger_share": 0.526}
    return {"data_seed": 21, "cells": cells, "rows": [
        {"cell": cell, "limiting_sb": shift_atlas.CELLS[cell][0],
         "psf_scale": shift_atlas.CELLS[cell][1], "arm": arm, "seeds": list(seeds),
         "target": {"mean": m, "std": 0.01, "per_seed": [m] * len(seeds)},
         "source": {"mean": 0.9, "std": 0.01, "per_seed": [0.9] * len(seeds)},
         "merger_calls": 0.5, "one_class": one_class.get((cell, arm)),
         "oracle_gap_share": None} for (cell, arm), m in means.items()]}


def test_the_atlas_readme_sentences_say_how_much_shift_each_method_takes():
    """The sentences README shows under the atlas figure are computed from the rows: how far
    along the depth axis each method stays no more than 5 points below the oracle (over the
    depths where the oracle is well above no-DA), the depths where it is not, the accuracies
    at the largest depth shift, one-class collapse, and what the widest PSF costs each
    method at SB_lim 25 (paired over the seeds both cells have)."""
    from analysis import shift_atlas

    oracle = {"sb27": 0.92, "sb26": 0.91, "sb25": 0.90, "sb24": 0.88, "sb23": 0.62,
              "sb25-psf1.25": 0.89, "sb25-psf1.5": 0.87}
    none = {"sb27": 0.80, "sb26": 0.84, "sb25": 0.70, "sb24": 0.60, "sb23": 0.58,
            "sb25-psf1.25": 0.66, "sb25-psf1.5": 0.61}
    mmd = {"sb27": 0.95, "sb26": 0.90, "sb25": 0.86, "sb24": 0.80, "sb23": 0.63,
           "sb25-psf1.25": 0.85, "sb25-psf1.5": 0.82}
    means = {**{(c, "oracle"): v for c, v in oracle.items()},
             **{(c, "none"): v for c, v in none.items()},
             **{(c, "mmd"): v for c, v in mmd.items()},
             ("sb23", "dann"): 0.526, ("sb25-psf1.5", "cdan"): 0.8}
    result = fake_atlas_result(means, one_class={("sb23", "dann"): "merger"})
    # sb23's oracle is 4 points above no-DA: no verdict there; MMD far above the oracle in
    # sb27 still counts (the check is "no more than 5 points below")
    assert shift_atlas.informative_depths(result) == ["sb27", "sb26", "sb25", "sb24"]
    assert shift_atlas.near_oracle_depth(result, "none") == {
        "walked": [27.0, 26.0, 25.0, 24.0], "reach": None, "every": False}
    assert shift_atlas.near_oracle_depth(result, "mmd") == {
        "walked": [27.0, 26.0, 25.0, 24.0], "reach": 25.0, "every": False}
    assert shift_atlas.near_oracle_depth(result, "dann")["walked"] == []
    text = shift_atlas.readme_markdown(result)
    assert text.startswith(f"![Target accuracy against the shift, per method]"
                           f"({shift_atlas.FIGURE})")
    assert "so far 69 of the 126 planned runs, 3 training seeds" in text
    assert ("at the depths where target labels help (the oracle ≥ 5 points above no-DA: SB_lim "
            "27, 26, 25 and 24), the target accuracy stays no more than 5 points below the "
            "target-trained oracle's for no-DA at none of them, MMD down to SB_lim 25, DANN "
            "not run there yet and CDAN not run there yet") in text
    assert ("At SB_lim 23 (+4.0 points over seeds 1, 2, 3) the target-trained oracle is less "
            "than 5 points above no-DA: no-DA already reaches about what target labels alone give "
            "there, so no method is judged against the oracle.") in text
    assert ("Against no-DA, target accuracy in points, averaged over the depths measured "
            "(paired over training seeds): MMD +12.4 (5 depths) and DANN -5.4 (1 depth).") in text
    assert ("At SB_lim 23, the largest noise shift measured with its oracle: no-DA 58.0 %, MMD "
            "63.0 %, DANN 52.6 % and oracle (target labels) 62.0 %.") in text
    assert "One-class collapse" in text and "DANN in `sb23` (mergers)" in text
    assert ("**In short:** From SB_lim 25 to 23 every method paired in both loses 12.0-28.0 "
            "points of target accuracy (the oracle 28.0), while a target PSF 1.5 × the source's "
            "moves none by more than 9.0 points at SB_lim 25 (DANN and CDAN not paired in all "
            "three cells yet). MMD and CDAN are at or above no-DA in every cell measured so "
            "far; at least 99 % of the target images are called one class by DANN in "
            "`sb23`.") in text
    # Review findings: a rise is not written as a loss, each collapsed arm keeps its own
    # cells, and with every cell in, "so far" goes.
    cells = list(shift_atlas.CELLS)
    means = {**{(c, "none"): 0.7 for c in cells}, **{(c, "dann"): 0.75 for c in cells},
             **{(c, "cdan"): 0.72 for c in cells}}
    means.update({("sb23", "none"): 0.75, ("sb23", "dann"): 0.526, ("sb24", "cdan"): 0.474,
                  ("sb25-psf1.5", "dann"): 0.76})
    lead = shift_atlas.in_short(fake_atlas_result(
        means, one_class={("sb23", "dann"): "merger", ("sb24", "cdan"): "non-merger"}))
    assert lead == ("**In short:** From SB_lim 25 to 23 the methods' target accuracy changes "
                    "by -22.4 to +5.0 points, while a target PSF 1.5 × the source's moves none "
                    "by more than 1.0 points at SB_lim 25. No method is at or above no-DA in "
                    "every cell; at least 99 % of the target images are called one class by "
                    "DANN in `sb23` and CDAN in `sb24`.")
    assert ("a target PSF 1.5 × the source's moves each method's target accuracy, in points "
            "against the source's PSF over the seeds both cells have: no-DA -9.0 (3 seeds), "
            "MMD -4.0 (3 seeds) and oracle (target labels) -3.0 (3 seeds).") in text
    # a method near the oracle everywhere, a method below it in the deepest cell, a partial
    # atlas without seeing cells, and no records at all
    means = {("sb27", "oracle"): 0.9, ("sb27", "none"): 0.7, ("sb23", "oracle"): 0.85,
             ("sb23", "none"): 0.6, ("sb27", "dann"): 0.89, ("sb23", "dann"): 0.84,
             ("sb27", "mmd"): 0.8}
    text = shift_atlas.readme_markdown(fake_atlas_result(means, seeds=(1,)))
    assert "DANN down to SB_lim 23 (all of them)" in text
    assert "no-DA at none of them" in text and "MMD at none of them" in text
    assert "so far 7 of the 126 planned runs, 1 training seed per" in text
    assert "no seeing cell shares a training seed of a method with `sb25` yet" in text
    assert "One-class" not in text and "judged against the oracle" not in text
    assert "In short" not in text  # no seeing cell: the two sentences wait for it
    assert "No atlas run is committed yet" in shift_atlas.readme_markdown(
        {"data_seed": 21, "cells": {}, "rows": []})
    # the seeing cost pairs the seeds: a method's other seeds in one cell do not count
    means = {("sb25", "mmd"): 0.8, ("sb25-psf1.5", "mmd"): 0.7}
    result = fake_atlas_result(means, seeds=(1, 2))
    result["rows"][0]["seeds"], result["rows"][0]["target"]["per_seed"] = [1, 2, 3], [0.8, 0.8,
                                                                                       0.2]
    assert "MMD -10.0 (2 seeds)" in shift_atlas.readme_markdown(result)


def test_the_atlas_writes_its_readme_block(tmp_path, capsys):
    """--readme rewrites only the block between the markers; a file without them is one line
    and exit 2, before anything is written."""
    import shutil

    from test_paper_tables import fake_seed

    from analysis import shift_atlas

    reports = tmp_path / "atlas"
    staging = tmp_path / "staging"
    for arm, rate in (("none", 0.6), ("mmd", 0.8), ("oracle", 0.9)):
        fake_seed(staging, arm, 1, {"source": 0.9, "target": rate}, data_seed=21)
    shutil.copytree(staging / "seeds/data21/deepmerge", reports / "seeds" / "sb24")
    bare = tmp_path / "BARE.md"
    for text in ("no block\n", f"{shift_atlas.README_END}\nx\n{shift_atlas.README_START}\n"):
        bare.write_text(text)  # no markers, or the end marker before the start marker
        assert shift_atlas.main(["--tables-only", "--reports", str(reports), "--readme",
                                 str(bare)]) == 2
        assert "no '<!-- shift-atlas:start" in capsys.readouterr().err
        assert not (reports / "atlas.json").exists() and bare.read_text() == text
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{shift_atlas.README_START}\nold\n{shift_atlas.README_END}\nb\n")
    assert shift_atlas.main(["--tables-only", "--reports", str(reports), "--readme",
                             str(readme)]) == 0
    from analysis.paper_tables import readme_block

    block = readme_block(readme, shift_atlas.README_START, shift_atlas.README_END)
    assert block == shift_atlas.readme_markdown(shift_atlas.build(reports))
    assert readme.read_text().startswith("a\n") and readme.read_text().endswith("b\n")
    # one seed has no std: atlas.json says null, strict JSON (no NaN token)
    saved = json.loads((reports / "atlas.json").read_text(),
                       parse_constant=lambda token: pytest.fail(f"non-strict JSON: {token}"))
    assert saved["rows"][0]["target"]["std"] is None


def test_readme_atlas_block_equals_the_committed_records():
    """README's atlas figure and sentences are what the committed atlas records give."""
    from analysis import shift_atlas
    from analysis.paper_tables import readme_block

    result = shift_atlas.build(REPO / "reports" / "atlas")
    if not result["rows"]:
        pytest.skip("no atlas records committed yet")
    block = readme_block(REPO / "README.md", shift_atlas.README_START, shift_atlas.README_END)
    assert block == shift_atlas.readme_markdown(result)
    assert (REPO / shift_atlas.FIGURE).is_file()


def test_the_atlas_gives_no_share_of_a_gap_too_small_to_mean_anything(tmp_path):
    """Where the oracle is less than NEAR_ORACLE above no-DA (a nearly unshifted cell, or one so
    noisy that target labels barely help), a method's share of that gap is noise: the table
    shows the gap and no share."""
    import shutil

    from test_paper_tables import fake_seed

    from analysis import shift_atlas

    reports = tmp_path / "atlas"
    staging = tmp_path / "staging"
    for arm, rate in (("none", 0.88), ("mmd", 0.95), ("oracle", 0.90)):
        fake_seed(staging, arm, 1, {"source": 0.9, "target": rate}, data_seed=21, n=4000)
    shutil.copytree(staging / "seeds/data21/deepmerge", reports / "seeds" / "sb27")
    result = shift_atlas.build(reports)
    rows = {r["arm"]: r for r in result["rows"]}
    gap = result["cells"]["sb27"]["oracle_gap"]
    assert 0 < gap < shift_atlas.NEAR_ORACLE and result["cells"]["sb27"]["oracle_gap_seeds"] == [1]
    assert rows["mmd"]["oracle_gap_share"] is None
    table = shift_atlas.markdown(result)
    assert f"| `sb27` | 27 | 1 | +{100 * gap:.1f} |" in table
    assert "% of gap" not in table


def test_few_real_hubble_stamps_at_the_target_noise_are_not_called_inside(tmp_path, capsys):
    """Review finding: 60 Hubble stamps rescaled to the target's noise read at SB_lim 25 with
    the seeing unread and were called "inside"; now they are not placed, and 100 of them
    read a seeing beyond the atlas's (outside without a model)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from ood_check import hubble_stamps

    for n, verdict in ((60, "verdict: not placed"), (100, "verdict: OUTSIDE")):
        np.save(tmp_path / "hubble.npy", hubble_stamps(n, noise_sigma=noise_sigma(25.0)))
        assert shift.main(["--images", str(tmp_path / "hubble.npy")]) == 0
        out = capsys.readouterr().out
        assert verdict in out and "verdict: inside" not in out, (n, out)
    assert "beyond the atlas's x1-x1.5" in out


def test_the_verdict_with_a_model_adapted_elsewhere(tmp_path, capsys, monkeypatch):
    """Review finding: images resembling sb26, judged by a model adapted to sb25 whose
    features flag most of them, were listed with sb26's accuracies and then called OUTSIDE.
    Now: inside sb26 with the model's mismatch said; outside only for a model adapted to the
    cell the images resemble; a target with no recorded depth is no atlas cell."""
    data = simulate(tmp_path / "pair", 26.0, 1.0, n=120)
    images = str(data / "target.h5")
    flags = {"flagged": 0.94, "alpha": 0.05, "median_ratio": 3.0, "auc": 0.97,
             "p_value": 1e-20, "n_validation": 50}
    monkeypatch.setattr(shift, "load_model", lambda trial: object())
    monkeypatch.setattr(shift, "model_flags", lambda trial, images, model=None: dict(flags))

    def trial(name, attrs):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "record.json").write_text(json.dumps({
            "method": "mmd", "problem": "mmd_deepmerge", "data": {"target_attrs": attrs}}))
        return folder

    cases = {"sb25": {"limiting_sb_mag_arcsec2": 25.0, "target_psf_scale": [1.0] * 3},
             "sb26": {"limiting_sb_mag_arcsec2": 26.0, "target_psf_scale": [1.0] * 3},
             "unknown": {}}
    results = {}
    for name, attrs in cases.items():
        folder = trial(name, attrs)
        results[name] = shift.measure(images, ATLAS, folder)
        assert shift.main(["--images", images, "--trial", str(folder)]) == 0
        results[name]["out"] = capsys.readouterr().out
    elsewhere = results["sb25"]
    assert elsewhere["reading"]["cell"] == "sb26"
    assert not elsewhere["verdict"]["outside"] and elsewhere["verdict"]["inside"]
    assert "adapted to sb25, not sb26, and its features flag 94 %" in \
        elsewhere["verdict"]["caveat"]
    assert "verdict: inside the atlas (sb26), but the model was adapted to sb25" in \
        elsewhere["out"]
    here = results["sb26"]
    assert here["verdict"]["outside"] and here["atlas_accuracy"] == {}
    assert "verdict: OUTSIDE" in here["out"] and "atlas target accuracy" not in here["out"]
    unknown = results["unknown"]
    assert "a target without a recorded SB_lim" in unknown["out"]
    assert "adapted to a target that is no atlas cell" in unknown["verdict"]["caveat"]
    # Review findings: with the seeing unread only the depth decides "elsewhere" (a model at
    # SB_lim 26 with a wider PSF is not elsewhere: its flags make the verdict outside), the
    # not-placed line keeps the caveat, and source-like images get --domain source.
    with h5py.File(data / "target.h5") as handle:
        np.save(tmp_path / "few.npy", handle["images"][:40])
    few = str(tmp_path / "few.npy")
    wide = trial("sb26wide", {"limiting_sb_mag_arcsec2": 26.0, "target_psf_scale": [1.5] * 3})
    result = shift.measure(few, ATLAS, wide)
    assert result["reading"]["psf_scale"] is None and result["verdict"]["outside"]
    result = shift.measure(few, ATLAS, tmp_path / "sb25")
    assert not result["verdict"]["outside"] and not result["verdict"]["inside"]
    text = shift.report(result)
    assert "verdict: not placed" in text and "adapted to sb25, not sb26" in text
    assert "a --trial with an OOD reference" not in text  # the model was asked already
    source = shift.measure(str(data / "source.h5"), ATLAS, tmp_path / "sb26")
    assert source["reading"]["cell"] == "source" and not source["verdict"]["outside"]
    assert "apply/predict.py --domain source" in source["verdict"]["caveat"]
