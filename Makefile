# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make search   -- the main job: a domain-adaptation search on the embedded benchmark
#   make test     -- the whole test suite (CPU; GPU tests skip themselves without CUDA)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-galaxy-da
PROBLEM ?= mmd_deepmerge
# Test processes (pytest-xdist); 0 runs the suite in this process. Each file's tests run in one
# process, and tests/conftest.py runs the Ray and Slurm files first, one after the other.
TEST_WORKERS ?= 2

.PHONY: search test lint install clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

search: $(STAMP)
	$(PY) search/run.py --problem $(PROBLEM)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

clean-venv:
	rm -rf $(VENV)
