"""Seed robustness CLI ``search/seeds.py``: chosen configuration, skipping, ``--only-seed``,
process pool, errors (exit 2). Records come from ``test_analysis.make_runs`` (built once)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_analysis import FAST, best_row, make_runs, record

from problems import problem_names
from search.seeds import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def runs(tiny_domain_pair, tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)


def stamps(folder: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in folder.glob("seed_*/record.json")}


def test_study_of_the_best_configuration(runs, tiny_domain_pair):
    study = runs / "seeds/mmd_deepmerge"
    document = json.loads((study / "seeds.json").read_text())
    best = best_row(runs, "mmd_deepmerge")
    best_record = record(runs / "search/mmd_deepmerge/trials" / str(best["job_id"]))
    assert document["origin"]["kind"] == "search"
    assert document["origin"]["job_id"] == best["job_id"]
    assert document["origin"]["objective_name"] == "source_val_acc_minus_mmd"
    assert document["config"] == {k: v for k, v in best_record["config"].items() if k != "seed"}
    assert document["config"]["epochs"] == 1  # the search's fixed --set values are kept
    assert document["data_dir"] == str(Path(tiny_domain_pair).resolve())  # from search.json
    assert document["seeds"] == [1, 2, 3]
    for seed in (1, 2, 3):
        rec = record(study / f"seed_{seed}")
        assert rec["status"] == "ok" and rec["seed"] == seed
        assert rec["config"] == {**best_record["config"], "seed": seed}
    # seed 1 of the study is the search's own trial again (same seed, data and config)
    assert record(study / "seed_1")["metrics"] == best_record["metrics"]


def test_set_configuration_without_search(runs):
    document = json.loads((runs / "seeds/none_resnet/seeds.json").read_text())
    assert document["origin"] == {"kind": "set", "overrides": FAST[1::2]}
    assert (document["config"]["backbone"], document["config"]["batch_size"]) == ("resnet18", 8)


def test_done_seeds_are_skipped_failed_ones_rerun_only_seed(runs, tmp_path, capsys):
    study = tmp_path / "study"
    shutil.copytree(runs / "seeds/mmd_deepmerge", study)
    argv = ["--problem", "mmd_deepmerge", "--from-search", str(runs / "search/mmd_deepmerge"),
            "--seeds", "3", "--out", str(study)]
    before = stamps(study)
    assert main(argv) == 0
    assert stamps(study) == before  # nothing was trained again
    assert "ran 0 seed(s)" in capsys.readouterr().out

    failed = json.loads((study / "seed_2/record.json").read_text())
    (study / "seed_2/record.json").write_text(json.dumps({**failed, "status": "failed"}))
    marked = stamps(study)
    assert main([*argv, "--only-seed", "4"]) == 0  # one seed only (a Slurm array task)
    after = stamps(study)
    assert set(after) == {"seed_1", "seed_2", "seed_3", "seed_4"}
    assert {k: after[k] for k in marked} == marked  # --only-seed 4 touches no other seed
    assert record(study / "seed_4")["seed"] == 4
    assert main(argv) == 0  # reruns the failed seed 2 only
    rerun = stamps(study)
    assert rerun["seed_2"] != marked["seed_2"] and record(study / "seed_2")["status"] == "ok"
    assert rerun["seed_1"] == before["seed_1"] and rerun["seed_3"] == before["seed_3"]


def test_process_pool_gives_the_same_numbers(runs, tmp_path):
    """Two worker processes (1 torch thread each) match the in-process run (all threads) up
    to float summation order: accuracies exactly, probabilities (Brier) to ~1e-5."""
    out = tmp_path / "pool"
    assert main(["--problem", "mmd_deepmerge", "--from-search", str(runs / "search/mmd_deepmerge"),
                 "--seeds", "2", "--workers", "2", "--out", str(out), "--quiet"]) == 0
    for seed in (1, 2):
        pooled = record(out / f"seed_{seed}")
        alone = record(runs / f"seeds/mmd_deepmerge/seed_{seed}")
        assert pooled["config"] == alone["config"]
        for split, metrics in alone["metrics"].items():
            assert pooled["metrics"][split] == pytest.approx(metrics, rel=1e-3, abs=1e-4)


def bad(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    assert info.value.code == 2
    return capsys.readouterr().err


def test_bad_input_is_one_clear_error(runs, tmp_path, capsys):
    search = runs / "search/mmd_deepmerge"
    out = ["--out", tmp_path / "x"]
    err = bad(["--problem", "mmd_vgg", "--from-search", search, *out], capsys)
    assert "unknown problem 'mmd_vgg'" in err and all(n in err for n in problem_names())
    assert "no such folder" in bad(["--problem", "mmd_deepmerge", "--from-search",
                                    tmp_path / "nope", *out], capsys)
    assert "no successful trial" in bad(["--problem", "mmd_resnet", "--from-search",
                                         runs / "search/mmd_resnet", *out], capsys)
    assert "--shared-config" in bad(["--problem", "dann_deepmerge", "--from-search", search, *out],
                                    capsys)
    assert "not of --problem 'dann_deepmerge'" in bad(["--problem", "dann_deepmerge",
                                                       "--from-search", search, *out], capsys)
    assert "--from-search LOGDIR or" in bad(["--problem", "mmd_deepmerge", *out], capsys)
    assert "seed is chosen" in bad(["--problem", "mmd_deepmerge", "--set", "seed=3", *out],
                                   capsys)
    assert "lrr" in bad(["--problem", "mmd_deepmerge", "--set", "lrr=3", *out], capsys)
    assert "another configuration" in bad(["--problem", "mmd_deepmerge", "--from-search", search,
                                           "--set", "lr=0.5", "--out",
                                           runs / "seeds/mmd_deepmerge"], capsys)
    assert not (tmp_path / "x").exists()  # nothing was started


def test_a_control_trained_with_another_problems_search(runs, tmp_path, capsys):
    """--shared-config: joint-BN / CORAL with the no-DA / MMD search's pick (issue 25)."""
    none_search = runs / "search/none_deepmerge"
    best = record(runs / "search/none_deepmerge/trials" / str(best_row(runs, "none_deepmerge")
                                                                ["job_id"]))
    out = tmp_path / "jointbn"
    assert main(["--problem", "jointbn_deepmerge", "--from-search", str(none_search),
                 "--shared-config", "--seeds", "1", "--out", str(out), "--quiet"]) == 0
    document = json.loads((out / "seeds.json").read_text())
    assert document["origin"]["search_problem"] == "none_deepmerge"
    assert document["origin"]["own_defaults"] == {"method": "jointbn"}
    assert document["config"] == {**{k: v for k, v in best["config"].items() if k != "seed"},
                                  "method": "jointbn"}
    # CORAL from the MMD search: the shared hyperparameters from the pick, its own λ_TL.
    from search.seeds import shared_configuration

    mmd = record(runs / "search/mmd_deepmerge/trials" / str(best_row(runs, "mmd_deepmerge")
                                                            ["job_id"]))["config"]
    coral, own = shared_configuration(mmd, "mmd_deepmerge", "coral_deepmerge")
    assert own["method"] == "coral" and coral["lr"] == mmd["lr"]
    assert coral["batch_size"] == mmd["batch_size"]
    err = bad(["--problem", "none_resnet", "--from-search", none_search, "--shared-config",
               "--out", tmp_path / "r"], capsys)
    assert "deepmerge backbone" in err and not (tmp_path / "r").exists()


def test_script_runs_as_documented(runs):
    """``python search/seeds.py`` (as jobs/seeds.sbatch calls it): a done seed, exit 0."""
    done = subprocess.run(
        [sys.executable, "search/seeds.py", "--problem", "mmd_deepmerge", "--from-search",
         str(runs / "search/mmd_deepmerge"), "--out", str(runs / "seeds/mmd_deepmerge"),
         "--seeds", "3", "--only-seed", "1"], cwd=REPO, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ran 0 seed(s)" in done.stdout


@pytest.mark.ray
def test_ray_tasks(runs, tmp_path):
    """Seeds as Ray tasks on a private local Ray instance (``--evaluator ray``)."""
    out = tmp_path / "ray"
    assert main(["--problem", "mmd_deepmerge", "--from-search", str(runs / "search/mmd_deepmerge"),
                 "--seeds", "2", "--workers", "2", "--evaluator", "ray", "--out", str(out),
                 "--quiet"]) == 0
    for seed in (1, 2):
        assert record(out / f"seed_{seed}")["status"] == "ok"
        assert record(out / f"seed_{seed}")["metrics"]["target_test"] == pytest.approx(
            record(runs / f"seeds/mmd_deepmerge/seed_{seed}")["metrics"]["target_test"],
            rel=1e-3, abs=1e-4)


def test_a_concurrent_tasks_temporary_seeds_json_is_not_foreign(tmp_path):
    """Slurm array tasks start together: one may be writing seeds.json (galaxies.atomic's
    ``seeds.json.tmp*``) while another checks the folder; that is not a foreign file."""
    from search.seeds import write_study

    out = tmp_path / "study"
    out.mkdir()
    (out / "seeds.json.tmpab12cd").write_text("{")
    document = {"problem": "none_deepmerge", "config": {"lr": 1.0}, "data": None,
                "data_dir": "x"}
    write_study(out, document)
    assert json.loads((out / "seeds.json").read_text())["problem"] == "none_deepmerge"
    (out / "notes.txt").write_text("mine")
    (out / "seeds.json").unlink()
    with pytest.raises(Exception, match="not a seed study"):
        write_study(out, document)
