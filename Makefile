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

# pytest workers: the tests wait for PostgreSQL, subprocesses, kernels and sleeps often enough
# that a third worker keeps two cores busy; worksteal evens out the long tests (the wheel, the
# pipelines) instead of leaving one worker with a queue at the end.
PYTEST_WORKERS ?= 3
NBVAL_LOG := $(VENV)/nbval.log

# The notebooks (nbval) run beside the pytest workers, not after them: their log is printed
# once both are done, and either one failing fails `make test`.
test: $(STAMP_DEV)
	$(BIN)/ruff check cjlib tests benchmarks scripts
	$(BIN)/ruff format --check cjlib tests benchmarks scripts
	$(BIN)/python -m pytest -p no:cacheprovider -p tests.nbval_setup --nbval-lax \
	    --nbval-current-env cjlib/notebooks/ > $(NBVAL_LOG) 2>&1 & nbval=$$!; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS); status=$$?; \
	wait $$nbval; nbval_status=$$?; \
	echo "--- nbval: python -m pytest -p tests.nbval_setup --nbval-lax --nbval-current-env cjlib/notebooks/"; \
	cat $(NBVAL_LOG); \
	test $$status -eq 0 && test $$nbval_status -eq 0

lint: $(STAMP_DEV)
	$(BIN)/ruff check cjlib tests benchmarks scripts

format: $(STAMP_DEV)
	$(BIN)/ruff format cjlib tests benchmarks scripts

bench: $(STAMP_DEV)
	$(BIN)/python benchmarks/bt_scaling.py

clean:
	rm -rf $(VENV) data/cj.sqlite3
