"""analysis/paper_study.py (issue 25): its commands, and the committed copy of a search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_analysis import make_runs

from analysis import paper_study

REPO = Path(__file__).resolve().parents[1]


def dry_run(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "analysis/paper_study.py", "--dry-run", *args],
                          cwd=REPO, capture_output=True, text=True, check=True)
    return proc.stdout.splitlines()


def test_dry_run_lists_every_search_with_the_paper_protocol():
    lines = dry_run()
    assert lines[0].startswith("python galaxies/simulate.py --out data/benchmark-v4-seed2-dev")
    searches = [line for line in lines if line.startswith("python search/run.py")]
    assert len(searches) == len(paper_study.SEARCHES)
    for problem, trials in paper_study.SEARCHES.items():
        line = next(s for s in searches if f"--problem {problem} " in s)
        assert f"--max-evals {trials} " in line and "--resume" in line
        for flag in ("--budget paper", "--stopper sha", "--data data/benchmark-v4-seed2-dev"):
            assert flag in line
    assert all(paper_study.SEARCHES[p] >= 30 for p in paper_study.DEEPMERGE)
    seeds = [line for line in lines if line.startswith("python search/seeds.py")]
    table1 = [line for line in seeds if any(f"--problem {p} " in line and "perdomain" not in line
                                            for p in paper_study.DEEPMERGE)]
    assert len(table1) == 3 * sum(paper_study.HELD_OUT.values())
    for data_seed in paper_study.HELD_OUT:
        assert any(line.startswith("python galaxies/simulate.py") and f"--seed {data_seed} "
                   in line and "--n-mergers 8120 --n-nonmergers 7306" in line for line in lines)
    # The newer methods' searches come right after Table 1's DeepMerge rows (the shift atlas
    # waits for them), before the extended table's seeds.
    newer = min(i for i, line in enumerate(lines) if "--problem coral_deepmerge " in line)
    jointbn = min(i for i, line in enumerate(lines) if "--problem jointbn_deepmerge " in line)
    assert max(i for i, line in enumerate(lines) if line in table1) < newer < jointbn
    # Table 1's DeepMerge rows come before the ResNet18 searches, seed-major ...
    first_resnet = min(i for i, line in enumerate(lines) if "_resnet" in line)
    assert max(i for i, line in enumerate(lines) if line in table1) < first_resnet
    assert [("--only-seed 1 " in line) for line in table1[:3]] == [True] * 3
    # ... and across the held-out data seeds: each has seeds 1-3 before any has seed 4.
    first_four = min(i for i, line in enumerate(table1) if "--only-seed 4 " in line)
    assert first_four == 3 * 3 * len(paper_study.HELD_OUT)
    # Every seed command is one of a study of a fixed size (seeds.json stays the same).
    for line in seeds:
        n = int(line.split("--seeds ")[1].split()[0])
        assert int(line.split("--only-seed ")[1].split()[0]) <= n

    from analysis.headline import DEVELOPMENT_DATA_SEEDS, HELD_OUT_DATA_SEEDS

    assert set(paper_study.HELD_OUT) <= set(HELD_OUT_DATA_SEEDS)
    assert "--seed 2 " in lines[0] and 2 in DEVELOPMENT_DATA_SEEDS
    assert lines[-1] == ("python analysis/paper_tables.py --reports reports/paper "
                         "--readme README.md --readme benchmarks/results/paper-scale.md")
    # Every seed trains the pick of its search's committed copy (what the reports show).
    assert all("--from-search reports/paper/searches/" in line for line in seeds)


def test_dry_run_lists_the_extended_table_and_resnet18():
    lines = dry_run()
    extended = [line for line in lines if "--only-seed" in line and "data11" in line]
    for problem in ("jointbn_deepmerge", "oracle_deepmerge", "oracleboth_deepmerge"):  # no-DA pick
        mine = [line for line in extended if f"--problem {problem} " in line]
        assert len(mine) == paper_study.EXTENDED_SEEDS
        assert all("--from-search reports/paper/searches/none_deepmerge --shared-config" in line
                   for line in mine)
    perdomain = [line for line in extended if "none_deepmerge-perdomain" in line]
    assert len(perdomain) == 3 and all("--set normalization=per_domain" in x for x in perdomain)
    assert sum("adabn_deepmerge data seed 11" in line for line in lines) == 3
    assert any(line.startswith("python training/classical.py") for line in lines)
    for problem in paper_study.NEWER:  # their own searches, before their seeds
        search = lines.index(next(x for x in lines if x.startswith("python search/run.py")
                                  and f"--problem {problem} " in x))
        mine = [i for i, x in enumerate(lines) if f"--problem {problem} " in x and
                "seeds.py" in x]
        assert len(mine) == 3 and min(mine) > search
    for problem in paper_study.RESNET:
        assert sum(f"--problem {problem} " in x and "seeds.py" in x for x in lines) == 3
    for problem in paper_study.CONTROLS["resnet18"]:
        line = next(x for x in lines if f"--problem {problem} " in x)
        assert "--from-search reports/paper/searches/none_resnet --shared-config" in line


def test_gpu_profile_packs_trials_and_runs_resnet18_first(tmp_path):
    lines = dry_run("--profile", "gpu", "--runs", str(tmp_path / "runs"), "--reports",
                    str(tmp_path / "reports"))
    searches = [line for line in lines if line.startswith("python search/run.py")]
    assert all(f"--evaluator process --workers {paper_study.GPU_PACK} --set device=cuda"
               in line for line in searches)
    assert "--problem none_resnet " in searches[0]
    seeds = [line for line in lines if "search/seeds.py" in line]
    assert all(line.endswith("--set device=cuda") or "--set device=cuda --set" in line
               for line in seeds)
    assert sum("--problem mmd_resnet " in x for x in seeds) == 10
    assert all(str(tmp_path) in line for line in searches + seeds)
    assert "--workers 4 --set device=cuda" in "\n".join(
        dry_run("--profile", "gpu", "--workers", "4"))


def test_the_deadline_starts_nothing_new(tmp_path, capsys):
    job = paper_study.Job("never", [sys.executable, "-c", "raise SystemExit(3)"],
                          [tmp_path / "record.json"], tmp_path / "log")
    assert paper_study.run_jobs([job], tmp_path, 1, deadline=0.0) == 1
    assert not job.log.exists()  # not started


def test_bad_arguments_exit_2():
    for bad in (["--only", "nope"], ["--profile", "tpu"], ["--workers", "0"],
                ["--deadline-min", "0"]):
        proc = subprocess.run([sys.executable, "analysis/paper_study.py", *bad],
                              cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 2, bad


def test_a_search_is_copied_without_checkpoints_with_its_selection_gap(tiny_domain_pair,
                                                                         tmp_path_factory):
    runs = make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)
    log_dir = runs / "search" / "mmd_deepmerge"
    out = tmp_path_factory.mktemp("paper") / "mmd_deepmerge"
    paper_study.copy_search(log_dir, out)
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "results.csv" in copied and "search.json" in copied and "selection.json" in copied
    assert not [p for p in copied if p.endswith((".pt", ".npz"))]
    assert len([p for p in copied if p.endswith("record.json")]) == 3
    gap = json.loads((out / "selection.json").read_text())
    assert gap["trials"] == 3
    assert gap["oracle"]["target_val_accuracy"] >= gap["label_free"]["target_val_accuracy"]
    assert gap["gap_target_val_points"] == pytest.approx(
        gap["oracle"]["target_val_accuracy"] - gap["label_free"]["target_val_accuracy"])


def test_a_seed_is_collected_with_predictions_and_a_thinned_roc(tiny_domain_pair,
                                                                 tmp_path_factory):
    runs = make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)
    trial = next((runs / "search" / "mmd_deepmerge" / "trials").glob("*/record.json")).parent
    out = paper_study.collect_seed(trial, tmp_path_factory.mktemp("reports"))
    record = json.loads((out / "record.json").read_text())
    assert out.parts[-4:] == (f"data{record['data']['source_attrs']['seed']}", "deepmerge",
                              "mmd", f"seed_{record['seed']}")
    assert sorted(p.name for p in out.iterdir()) == ["predictions.npz", "record.json", "roc.json"]
    roc = json.loads((out / "roc.json").read_text())
    assert set(roc) == {"source_test", "target_test"}
    many = {"target_test": {"fpr": list(range(1000)), "tpr": list(range(1000))},
            "target_val": {"fpr": [0], "tpr": [0]}}
    thin = paper_study.thin_roc(many, max_points=50)
    assert list(thin) == ["target_test"] and len(thin["target_test"]["fpr"]) == 50
    assert thin["target_test"]["fpr"][0] == 0 and thin["target_test"]["fpr"][-1] == 999


def test_gpu_study_script_dry_run(tmp_path):
    """benchmarks/gpu_study.sh: the prepared device run's plan, printed without a GPU."""
    import os

    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path), "PY": sys.executable,
           "RUNS": str(tmp_path / "runs"), "REPORTS": str(tmp_path / "reports")}
    proc = subprocess.run(["bash", "benchmarks/gpu_study.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"python analysis/paper_tables.py --reports {tmp_path / 'reports'}"
    first_search = next(x for x in lines if x.startswith("python search/run.py"))
    assert "--problem none_resnet " in first_search and "--set device=cuda" in first_search
    env["PY"] = "python-that-does-not-exist"
    bad = subprocess.run(["bash", "benchmarks/gpu_study.sh"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "is missing for python-that-does-not-exist" in bad.stderr
    # The committed records travel in $OUT/reports: finished work is not rerun there.
    assert (tmp_path / "reports" / "searches" / "none_deepmerge" / "selection.json").is_file()


def test_adabn_re_scores_the_no_da_seed_with_its_configuration(tiny_domain_pair,
                                                                tmp_path_factory, tmp_path):
    """The extended table's AdaBN job: the finished no-DA seed's network, target BN stats."""
    import shutil

    runs = make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)
    trial = next((runs / "search" / "none_deepmerge" / "trials").glob("*/record.json")).parent
    none_seed = tmp_path / "seeds" / "data11" / "none_deepmerge" / "seed_1"
    shutil.copytree(trial, none_seed)
    job = paper_study.adabn_job(11, 1, tmp_path, paper_study.PROFILES["cpu"],
                                data=str(tiny_domain_pair), reports=tmp_path / "reports")
    assert not job.done() and job.command is None
    command = job.prepare()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert job.done()
    record = json.loads(job.records[0].read_text())
    none = json.loads((none_seed / "record.json").read_text())
    assert record["method"] == "adabn" and record["reevaluated_from"]
    assert {k: v for k, v in record["config"].items() if k != "method"} == \
        {k: v for k, v in none["config"].items() if k != "method"}


def test_a_failed_record_is_rerun_and_a_missing_input_is_one_line(tmp_path, capsys):
    """Review findings: a record that is not ok does not count as done; a job whose input is
    missing (AdaBN without its no-DA seed) is reported, not raised through the pool."""
    record = tmp_path / "seed_1" / "record.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"status": "failed"}))
    rerun = paper_study.Job("rerun", [sys.executable, "-c", "raise SystemExit(0)"], [record],
                            tmp_path / "log")
    assert not rerun.done()
    assert paper_study.run_jobs([rerun], tmp_path, 1, deadline=None) == 1  # ran, still failed
    assert "rerun: exit 0" in capsys.readouterr().out
    adabn = paper_study.adabn_job(11, 1, tmp_path / "runs", paper_study.PROFILES["cpu"],
                                  reports=tmp_path / "reports")  # not the committed records
    assert paper_study.run_jobs([adabn], tmp_path, 1, deadline=None) == 1
    assert "not run (FileNotFoundError" in capsys.readouterr().out


def test_a_job_running_past_the_deadline_is_stopped(tmp_path, monkeypatch, capsys):
    import time

    monkeypatch.setattr(paper_study, "GRACE_S", 0.5)
    job = paper_study.Job("slow", [sys.executable, "-c", "import time; time.sleep(60)"],
                          [tmp_path / "record.json"], tmp_path / "log")
    tick = time.monotonic()
    assert paper_study.run_jobs([job], tmp_path, 1, deadline=time.monotonic() + 1) == 1
    assert time.monotonic() - tick < 20
    assert "stopped at the deadline" in capsys.readouterr().out


def test_committed_copies_count_as_done(tmp_path, capsys):
    """A fresh clone (or the GPU script) resumes from reports/: a seed whose committed record
    is ok is not retrained, a search whose copy holds all its trials is not rerun."""
    job = paper_study.seed_job("mmd_deepmerge", 11, 1, 10, tmp_path / "runs",
                               paper_study.PROFILES["cpu"], reports=tmp_path / "reports")
    assert job.committed == [tmp_path / "reports" / "seeds" / "data11" / "deepmerge" / "mmd"
                             / "seed_1" / "record.json"]
    assert not job.done()
    job.committed[0].parent.mkdir(parents=True)
    job.committed[0].write_text(json.dumps({"status": "failed"}))
    assert not job.done()  # a failed copy is trained again
    job.committed[0].write_text(json.dumps({"status": "ok"}))
    assert job.done()
    job.command = [sys.executable, "-c", "raise SystemExit(5)"]  # would fail if started
    assert paper_study.run_jobs([job], tmp_path / "reports", 1, deadline=None) == 0
    assert not job.log.exists() and "exit" not in capsys.readouterr().out
    perdomain = paper_study.seed_job("none_deepmerge", 11, 2, 3, tmp_path, paper_study.PROFILES[
        "cpu"], study="none_deepmerge-perdomain", sets=("normalization=per_domain",))
    assert perdomain.committed[0].parts[-4:] == ("deepmerge", "none-perdomain", "seed_2",
                                                 "record.json")
    extended = paper_study.extended_jobs(tmp_path, paper_study.PROFILES["cpu"])
    classical = extended[0]  # the longest job first: it runs beside the others, not alone
    assert classical.label.startswith("classical")
    assert [p.parts[-4:-1] for p in classical.committed] == [
        ("deepmerge", "classical", f"seed_{s}") for s in (1, 2, 3)]

    copy = tmp_path / "copy"
    copy.mkdir()
    assert not paper_study.committed_search_done(copy, "coral_deepmerge")
    (copy / "selection.json").write_text("{}")
    rows = ["job_id,objective"] + [f"{i},0.5" for i in range(9)]
    (copy / "results.csv").write_text("\n".join(rows) + "\n")
    assert not paper_study.committed_search_done(copy, "coral_deepmerge")  # 9 of 10
    (copy / "results.csv").write_text("\n".join([*rows, "9,0.4"]) + "\n")
    assert paper_study.committed_search_done(copy, "coral_deepmerge")


def test_the_committed_seed_folder_is_where_collect_seed_writes(tiny_domain_pair,
                                                                 tmp_path_factory):
    runs = make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)
    reports = tmp_path_factory.mktemp("reports")
    for problem in ("none_deepmerge", "mmd_deepmerge"):
        trial = next((runs / "search" / problem / "trials").glob("*/record.json")).parent
        out = paper_study.collect_seed(trial, reports)
        record = json.loads((out / "record.json").read_text())
        assert out / "record.json" == paper_study.committed_seed(
            reports, record["data"]["source_attrs"]["seed"], problem, record["seed"])


def test_every_committed_seed_trains_its_committed_search_pick():
    """The committed seeds' configurations are the picks of the committed searches, as the
    study's own commands choose them (search/seeds.py's choose_configuration)."""
    from search.seeds import build_parser, choose_configuration

    jobs = [job for job in (*paper_study.seed_jobs(Path("runs/paper")),
                            *paper_study.extended_jobs(Path("runs/paper"),
                                                       paper_study.PROFILES["cpu"]),
                            *paper_study.newer_jobs(Path("runs/paper"),
                                                    paper_study.PROFILES["cpu"]),
                            *paper_study.resnet_jobs(Path("runs/paper"),
                                                     paper_study.PROFILES["cpu"]))
            if job.command and "search/seeds.py" in job.command
            and all(paper_study._record_ok(REPO / p) for p in job.committed)]
    assert len(jobs) >= 9  # Table 1's DeepMerge rows on data seed 11 at least
    for job in jobs:
        args = build_parser().parse_args(job.command[2:])
        args.from_search = str(REPO / args.from_search)
        config, origin = choose_configuration(args)
        record = json.loads((REPO / job.committed[0]).read_text())
        assert origin["kind"] == "search"
        assert {k: v for k, v in record["config"].items() if k != "seed"} == \
            {k: v for k, v in config.items() if k != "seed"}, job.label


def test_the_tables_know_what_the_study_plans():
    """paper_tables' PLANNED_ARMS / FIRST_DATA_SEED_ONLY say what paper_study trains."""
    from analysis import paper_tables
    from problems import get_problem

    for name, profile in paper_study.PROFILES.items():
        jobs = paper_study.resnet_jobs(Path("runs/paper"), profile)
        arms = {get_problem(j.command[j.command.index("--problem") + 1]).method for j in jobs}
        assert arms == set(paper_tables.PLANNED_ARMS["resnet18"]), name
        first = f"data{next(iter(paper_study.HELD_OUT))}"
        assert all(first in str(j.committed[0]) for j in jobs)
    assert "resnet18" in paper_tables.FIRST_DATA_SEED_ONLY


def test_searches_only():
    lines = dry_run("--searches-only", "--only", *paper_study.NEWER)
    searches = [line for line in lines if line.startswith("python search/run.py")]
    assert len(searches) == len(paper_study.NEWER)
    assert lines[0].startswith("python galaxies/simulate.py --out data/benchmark-v4-seed2-dev")
    assert not [line for line in lines if "search/seeds.py" in line or "heldout" in line]


def test_a_stopped_search_goes_on_from_its_committed_copy_on_another_machine(
        tiny_domain_pair, tmp_path):
    """A partial copy has no selection.json, holds back its seeds, and resumes elsewhere."""
    import csv

    from test_analysis import FAST

    from search.driver import main as search_main

    common = ["--problem", "mmd_deepmerge", "--data", str(tiny_domain_pair), "--evaluator",
              "serial", "--search", "random", "--quiet", *FAST]
    first = tmp_path / "machine1" / "search"
    assert search_main([*common, "--log-dir", str(first), "--max-evals", "2"]) == 0
    copy = tmp_path / "reports" / "searches" / "mmd_deepmerge"
    paper_study.copy_search(first, copy, partial=True)
    assert not (copy / "selection.json").exists()
    assert not paper_study.committed_search_done(copy, "mmd_deepmerge")
    job = paper_study.Job("a seed", ["python", "search/seeds.py", "--from-search", str(copy)],
                          [tmp_path / "record.json"], tmp_path / "log")
    assert not paper_study.search_complete(job)  # no seed trains a pick of half a search

    second = tmp_path / "machine2" / "search"
    assert paper_study.restore_search(copy, second)
    assert not paper_study.restore_search(copy, second)  # a used folder is left alone
    assert search_main([*common, "--log-dir", str(second), "--max-evals", "3", "--resume"]) == 0
    with (first / "results.csv").open(newline="") as handle:
        before = {row["job_id"]: row for row in csv.DictReader(handle)}
    with (second / "results.csv").open(newline="") as handle:
        after = {row["job_id"]: row for row in csv.DictReader(handle)}
    assert len(after) == 3 and set(before) < set(after)
    for job_id, row in before.items():  # reloaded, not rerun
        assert after[job_id]["p:lr"] == row["p:lr"]
        assert after[job_id]["m:wall_time_s"] == row["m:wall_time_s"]
    assert json.loads((second / "search.json").read_text())["completed_before"] == 2

    paper_study.copy_search(second, copy)  # finished: the selection gap is written
    assert (copy / "selection.json").is_file()
    assert len(list((copy / "trials").glob("*/record.json"))) == 3
