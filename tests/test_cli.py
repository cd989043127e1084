"""One CLI layer: the same refusal of ``method``/``backbone`` everywhere, entry points that run,
and search problems that load without torchvision."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from training.cli import CliError, typed_sets

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENTRY_POINTS = ("galaxy-da-simulate", "galaxy-da-validate", "galaxy-da-import", "galaxy-da-plot",
                "galaxy-da-train", "galaxy-da-search", "galaxy-da-seeds",
                "galaxy-da-selection-study", "galaxy-da-report", "galaxy-da-compare",
                "galaxy-da-reproduce", "galaxy-da-classical", "galaxy-da-predict",
                "galaxy-da-calibrate", "galaxy-da-status", "galaxy-da-shift")


def run(*argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_typed_sets_refuses_what_the_problem_chooses():
    assert typed_sets("mmd_deepmerge", ["lr=1e-3", "epochs=2"]) == {"lr": 1e-3, "epochs": 2}
    for item in ("method=dann", "backbone=resnet18"):
        with pytest.raises(CliError, match="chosen by --problem"):
            typed_sets("mmd_deepmerge", [item])
    with pytest.raises(CliError, match="'lamda_tl'.*did you mean 'lambda_tl'"):
        typed_sets("mmd_deepmerge", ["lamda_tl=1"])


def test_train_refuses_a_method_override(tmp_path):
    done = run(sys.executable, "training/train.py", "--problem", "mmd_deepmerge", "--set",
               "method=dann", "--out", tmp_path / "t")
    assert done.returncode == 2
    assert "method is chosen by --problem (mmd_deepmerge)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("command", ["search", "seeds"])
def test_search_and_seeds_refuse_it_the_same_way(command, tmp_path, capsys):
    from search.run import main as search_main
    from search.seeds import main as seeds_main

    main, out = (search_main, "--log-dir") if command == "search" else (seeds_main, "--out")
    with pytest.raises(SystemExit) as info:
        main(["--problem", "mmd_deepmerge", "--set", "backbone=resnet18", out,
              str(tmp_path / "x")])
    assert info.value.code == 2
    assert "backbone is chosen by --problem (mmd_deepmerge)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_every_entry_point_is_installed_and_loads():
    installed = {ep.name: ep for ep in entry_points(group="console_scripts")
                 if ep.name.startswith("galaxy-da-")}
    assert set(installed) == set(ENTRY_POINTS)
    for name, ep in installed.items():
        assert (BIN / name).is_file(), f"{name}: not installed; rerun pip install -e ."
        assert callable(ep.load()), name


@pytest.mark.parametrize("name", ["galaxy-da-train", "galaxy-da-report", "galaxy-da-shift"])
def test_entry_points_run(name):
    done = run(BIN / name, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout


def test_search_entry_point_lists_problems():
    done = run(BIN / "galaxy-da-search", "--list")
    assert done.returncode == 0 and "mmd_resnet (method=mmd, backbone=resnet18)" in done.stdout


def test_problems_import_without_torchvision():
    code = ("import sys, problems; problems.get_problem('mmd_resnet'); "
            "assert 'torchvision' not in sys.modules, 'torchvision was imported'")
    done = run(sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
