"""Both analysis notebooks run top to bottom (nbclient, kernel ``python3``) on real records.

The ``python3`` kernel is ipykernel's own (``ipykernel`` is a dev dependency; jupyter_client
falls back to it with this interpreter when no ``python3`` kernel spec is installed).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from test_analysis import make_runs

NOTEBOOKS = Path(__file__).resolve().parents[1] / "analysis" / "notebooks"


@pytest.fixture(scope="session")
def runs(tiny_domain_pair, tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.getbasetemp() / "analysis", tiny_domain_pair)


def execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return notebook


def outputs(notebook, mime: str) -> list[str]:
    return [out["data"][mime] for cell in notebook.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if mime in out.get("data", {})]


def test_notebooks_call_only_analysis():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path.name}: stored outputs"
                for line in cell.source.splitlines():
                    assert not line.startswith(("def ", "class ", "for ", "from ")), line


def test_browse_search_runs(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_DA_SEARCH", str(runs / "search/mmd_deepmerge"))
    notebook = execute("browse_search.ipynb", tmp_path)
    assert len(outputs(notebook, "image/png")) == 2  # search space, progress
    html = "".join(outputs(notebook, "text/html"))
    assert "lambda_tl" in html and "objective" in html


def test_paper_results_runs(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_DA_RUNS", str(runs))
    notebook = execute("paper_results.ipynb", tmp_path)
    assert len(outputs(notebook, "image/png")) == 6  # Figure 1 x 2, seeds, 3 diagnostics
    html = "".join(outputs(notebook, "text/html"))
    assert "adversarial" in html and "—" in html and "±" in html
    assert "F_nan" in html  # the failed trials are listed
