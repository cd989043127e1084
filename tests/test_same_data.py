"""One "same data?" check (``galaxies.pairs.same_data``) wherever work is reused (issue 23).

For a seed study, the classical baseline's seed study, ``train.py --from-trial``,
``apply/calibrate.py``, ``apply/fit_ood.py`` and trial resume: work made on the tiny pair is
refused, with one line saying what differs, when the data is re-simulated with another seed
(:func:`conftest.make_tiny_pair`), and accepted on the same data in another folder (a moved
benchmark is the same data). Records written before ``data.identity`` existed fall back to
their attributes.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from conftest import make_tiny_pair

from galaxies.pairs import data_identity, same_data
from galaxies.schema import domain_paths, write_domain
from training.record import read_record, recorded_identity, write_json

FAST = ["epochs=1", "batch_size=8", "max_batches_per_epoch=2", "precision=fp32"]
SETS = sum((["--set", item] for item in FAST), [])
DIFFERS = "source: attribute seed 0 vs 1"  # what the tiny pair and its re-simulation differ in


def write_pair(folder: Path, seed: int) -> Path:
    """The tiny pair made with ``seed`` in ``folder`` (replacing what is there)."""
    folder.mkdir(parents=True, exist_ok=True)
    for domain, data in make_tiny_pair(seed=seed).items():
        write_domain(domain_paths(folder)[domain], data)
    return folder


@pytest.fixture(scope="module")
def pairs(tiny_domain_pair, tmp_path_factory) -> dict[str, Path]:
    """``same``: the tiny pair in another folder; ``other``: re-simulated with seed 1."""
    base = tmp_path_factory.mktemp("same_data")
    shutil.copytree(tiny_domain_pair, base / "same")
    return {"same": base / "same", "other": write_pair(base / "other", seed=1)}


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def strip_identity(folder: Path) -> None:
    """Make ``folder/record.json`` look like a record written before ``data.identity``."""
    record = read_record(folder)
    record["data"].pop("identity")
    write_json(folder / "record.json", record)


def stamps(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the check itself ---------------------------------------------------------------------------


def test_same_data_names_what_differs(tiny_domain_pair, pairs):
    mine = data_identity(tiny_domain_pair)
    assert same_data(mine, data_identity(pairs["same"])) is None  # a copy is the same data
    why = same_data(mine, data_identity(pairs["other"]))
    assert why.startswith(DIFFERS) and "target: attribute seed 0 vs 1" in why
    assert "pair_id" not in why.split(";")[0].split(", ")[0]  # the cause first, the id after
    assert one_line(why) == why
    # unknown (no identity) agrees with anything; attributes alone are compared on attributes
    assert same_data(None, mine) is None and same_data(mine, {}) is None
    attrs_only = {d: {"attrs": mine[d]["attrs"]} for d in mine}
    assert same_data(attrs_only, mine) is None
    assert same_data(attrs_only, data_identity(pairs["other"])).startswith(DIFFERS)
    # the size alone differs: said when nothing else is
    bigger = {**mine, "target": {**mine["target"], "bytes": mine["target"]["bytes"] + 1}}
    assert same_data(mine, bigger) == (f"target: bytes {mine['target']['bytes']} vs "
                                       f"{mine['target']['bytes'] + 1}")
    # a file that cannot be read differs from one that can
    assert "no readable target.h5" in same_data(mine, {**mine, "target": None})


def test_records_carry_the_identity_and_older_ones_fall_back_to_attributes(tiny_trial,
                                                                          tiny_domain_pair):
    record = read_record(tiny_trial)
    assert record["data"]["identity"] == json.loads(json.dumps(data_identity(tiny_domain_pair)))
    old = {**record, "data": {k: v for k, v in record["data"].items() if k != "identity"}}
    assert recorded_identity(old) == {d: {"attrs": record["data"][f"{d}_attrs"]}
                                      for d in ("source", "target")}
    assert recorded_identity({"data": {"dir": None, "identity": None}}) is None


# --- seed studies -------------------------------------------------------------------------------


def test_seed_study_on_other_data_is_refused(tiny_domain_pair, pairs, tmp_path, capsys):
    from search.seeds import main

    out = tmp_path / "study"
    argv = ["--problem", "none_deepmerge", *SETS, "--seeds", "1", "--out", str(out), "--quiet"]
    assert main([*argv, "--data", str(tiny_domain_pair)]) == 0
    meta = json.loads((out / "seeds.json").read_text())
    assert meta["data"] == json.loads(json.dumps(data_identity(tiny_domain_pair)))
    before = stamps(out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([*argv, "--data", str(pairs["other"])])
    assert info.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert "made on other data" in line and DIFFERS in line and "Fix: pass the study's own" in line
    assert stamps(out) == before  # nothing written, nothing rerun
    # a study written before seeds.json and the records held the identity: their attributes
    del meta["data"]
    write_json(out / "seeds.json", meta)
    strip_identity(out / "seed_1")
    before = stamps(out)
    with pytest.raises(SystemExit):
        main([*argv, "--data", str(pairs["other"])])
    assert "seed_1/record.json: " + DIFFERS in one_line(capsys.readouterr().err)
    assert stamps(out) == before
    # the same data in another folder: accepted, the finished seed kept
    record_stamp = (out / "seed_1" / "record.json").stat().st_mtime_ns
    assert main([*argv, "--data", str(pairs["same"])]) == 0
    assert (out / "seed_1" / "record.json").stat().st_mtime_ns == record_stamp


def test_classical_seed_study_on_other_data_is_refused(tiny_domain_pair, pairs, tmp_path,
                                                       capsys):
    from training import classical

    out = tmp_path / "classical"
    argv = ["--out", str(out), "--seeds", "1", "--max-train-galaxies", "2", "--workers", "1",
            "--quiet"]
    assert classical.main([*argv, "--data", str(tiny_domain_pair)]) == 0
    record = read_record(out / "seed_1")
    assert record["data"]["identity"] == json.loads(json.dumps(data_identity(tiny_domain_pair)))
    before = stamps(out)
    capsys.readouterr()
    assert classical.main([*argv, "--data", str(pairs["other"])]) == 2
    line = one_line(capsys.readouterr().err)
    assert "made on other data" in line and DIFFERS in line and "Fix:" in line
    assert stamps(out) == before
    assert classical.main([*argv, "--data", str(pairs["same"])]) == 0
    assert (out / "seed_1" / "record.json").stat().st_mtime_ns == \
        before["seed_1/record.json"]  # kept, not rerun


# --- a finished trial reused: --from-trial, calibration, the OOD fit ---------------------------


@pytest.mark.parametrize("old_record", [False, True], ids=["identity", "attributes"])
def test_from_trial_on_other_data_is_refused(tiny_trial, pairs, tmp_path, capsys, old_record):
    from training.train import main

    trained = tmp_path / "none"
    shutil.copytree(tiny_trial, trained)
    if old_record:
        strip_identity(trained)
    argv = ["--problem", "adabn_deepmerge", "--from-trial", str(trained), "--quiet",
            "--set", "epochs=1", "--set", "batch_size=8", "--set", "max_batches_per_epoch=2"]
    assert main([*argv, "--data", str(pairs["other"]), "--out", str(tmp_path / "bad")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "was trained on other data" in line and DIFFERS in line and "Fix:" in line
    assert not (tmp_path / "bad" / "record.json").exists()
    assert main([*argv, "--data", str(pairs["same"]), "--out", str(tmp_path / "ok")]) == 0
    assert read_record(tmp_path / "ok")["reevaluated_from"].endswith("none")


@pytest.mark.parametrize("command", ["calibrate", "fit_ood"])
def test_calibration_and_ood_fit_on_other_data_are_refused(tiny_trial, pairs, tmp_path, capsys,
                                                           command):
    from apply import calibrate, fit_ood

    main = {"calibrate": calibrate.main, "fit_ood": fit_ood.main}[command]
    written = {"calibrate": "calibration.json", "fit_ood": "ood_reference.npz"}[command]
    trial = tmp_path / "trial"
    shutil.copytree(tiny_trial, trial)
    assert main(["--trial", str(trial), "--data", str(pairs["other"])]) == 2
    line = one_line(capsys.readouterr().err)
    assert "is not the data" in line and DIFFERS in line and "Fix: pass the trial's own" in line
    assert not (trial / written).exists()
    strip_identity(trial)  # an older record: its attributes decide
    assert main(["--trial", str(trial), "--data", str(pairs["other"])]) == 2
    assert DIFFERS in one_line(capsys.readouterr().err)
    assert main(["--trial", str(trial), "--data", str(pairs["same"])]) == 0
    assert (trial / written).is_file()


# --- trial resume -------------------------------------------------------------------------------


class Killed(BaseException):
    """Stands for a kill (nothing in the trial catches it)."""


def kill_in_second_epoch(done: int, interim) -> bool:
    """Kill once epoch 2 trained, before its checkpoint: ``resume.pt`` holds epoch 1."""
    if done == 2:
        raise Killed
    return False


def test_resume_on_other_data_starts_afresh_and_says_why(tmp_path):
    from training.loop import run_trial
    from training.naming import problem_config
    from training.resume import RESUME, ResumeWarning, read_resume

    config = problem_config("none_deepmerge", [*FAST, "epochs=2"])
    data, out = write_pair(tmp_path / "data", seed=0), tmp_path / "trial"
    with pytest.raises(Killed):
        run_trial(config, data, out, progress=False, on_epoch=kill_in_second_epoch)
    assert read_resume(out)["data"] == data_identity(data)  # what a resume is compared with
    write_pair(data, seed=1)  # the same folder re-simulated
    with pytest.warns(ResumeWarning) as caught:
        record = run_trial(config, data, out, progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, ResumeWarning)]
    assert len(messages) == 1
    assert "was written on other data" in one_line(messages[0]) and DIFFERS in messages[0]
    assert record["status"] == "ok" and "resumed" not in record
    assert not (out / RESUME).exists()
    # the same data in another folder: continued, without a word
    with pytest.raises(Killed):
        run_trial(config, data, out, progress=False, on_epoch=kill_in_second_epoch)
    moved = tmp_path / "moved"
    data.rename(moved)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        record = run_trial(config, moved, out, progress=False)
    assert record["resumed"][0]["from_epoch"] == 1 and record["status"] == "ok"
