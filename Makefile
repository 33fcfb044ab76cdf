# Two commands on a fresh machine with only Python >= 3.11 and make:
#   make run   - create .venv, install cjlib, run the main job on the embedded SQLite database
#   make test  - create .venv, install cjlib[dev], run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: run test lint format bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cjlib needs Python >= 3.11: run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/cj pipeline

test: $(STAMP_DEV)
	$(BIN)/ruff check cjlib tests benchmarks scripts
	$(BIN)/ruff format --check cjlib tests benchmarks scripts
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)
	$(BIN)/python -m pytest -p tests.nbval_setup --nbval-lax --nbval-current-env cjlib/notebooks/

lint: $(STAMP_DEV)
	$(BIN)/ruff check cjlib tests benchmarks scripts

format: $(STAMP_DEV)
	$(BIN)/ruff format cjlib tests benchmarks scripts

bench: $(STAMP_DEV)
	$(BIN)/python benchmarks/bt_scaling.py

clean:
	rm -rf $(VENV) data/cj.sqlite3
