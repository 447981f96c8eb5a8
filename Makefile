# billing-batch: the two commands of the README.
#   make demo   set up everything, then close a sample month end to end
#   make test   set up everything, then lint, type-check and run the tests
#   make test-scale   the 'scale' tests: a throwaway PostgreSQL (state, lake catalog, locks)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BB := $(VENV)/bin/billing-batch
DEMO_HOME ?= $(CURDIR)/billing-data
STAMP := $(VENV)/.installed

.PHONY: demo test test-scale setup system-deps lint typecheck pytest bench clean

demo: setup
	@BILLING_HOME=$(DEMO_HOME) bash scripts/demo.sh

test: setup lint typecheck pytest

setup: system-deps $(STAMP)

# Debian packages: WeasyPrint's fast font subsetting, pdftotext for PDF checks, and
# PostgreSQL for the scale tests' throwaway cluster.
system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e ".[dev,scale]"
	@touch $(STAMP)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

pytest:
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

# The tests marked 'scale' (left out of the default run): each test process starts its
# own PostgreSQL cluster in a temporary folder (initdb, 127.0.0.1, a free port) and stops it.
test-scale: setup
	$(VENV)/bin/pytest -q -n 2 --dist loadfile -m scale

bench: setup
	$(PY) benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) billing-data .pytest_cache .mypy_cache .ruff_cache
