# billing-batch: the two commands of the README.
#   make demo   set up everything, then close a sample month end to end
#   make test   set up everything, then lint, type-check and run the tests (not the slow ones)
#   make test-slow   the long end-to-end runs (marked slow)
#   make test-scale  Postgres, SeaweedFS and Dask started by the harness; .ci/run runs all three
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BB := $(VENV)/bin/billing-batch
DEMO_HOME ?= $(CURDIR)/billing-data
STAMP := $(VENV)/.installed

# Python's bytecode cache on: with PYTHONDONTWRITEBYTECODE set (some CI images do), every
# process (each test worker, CLI call, Prefect server) compiled every module it imported
# from source again: ~10 s per pytest worker, a third of the suite's time.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-slow test-scale setup system-deps lint typecheck pytest bench clean

demo: setup
	@BILLING_HOME=$(DEMO_HOME) bash scripts/demo.sh

test: setup lint typecheck pytest

setup: system-deps $(STAMP)

# Debian packages: WeasyPrint's fast font subsetting, and pdftotext for PDF checks.
system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e ".[dev,scale]"
	@# bytecode for the installed packages now (pip skips it under PYTHONDONTWRITEBYTECODE);
	@# a file some package ships that does not compile is that package's, not ours
	@$(PY) -m compileall -qq -j 0 $(VENV)/lib > /dev/null || true
	@touch $(STAMP)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

pytest:
	$(VENV)/bin/pytest -q -n 2 --dist loadfile -m "not slow and not scale"

test-slow: setup
	$(VENV)/bin/pytest -q -n 2 --dist loadfile -m "slow and not scale"

# Past one machine: real SeaweedFS (S3) and a Dask scheduler + 2 workers started by the
# harness; the month close there vs the embedded default (see README "Past one machine").
test-scale: setup
	$(VENV)/bin/pytest -q -n 2 --dist loadfile -m scale tests/scale

bench: setup
	$(PY) benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) billing-data .pytest_cache .mypy_cache .ruff_cache
