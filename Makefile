# One command for each thing a user does. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench ui clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## The main job: emulator + real Dagster instance and daemon + backfill into DuckDB, then a summary.
demo: $(STAMP)
	$(BIN)/gsc-pipeline demo

## The test suite (CI runs exactly this).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gsc_pipeline tests

bench: $(STAMP)
	$(BIN)/gsc-pipeline bench --size standard --out docs/bench

ui: $(STAMP)
	$(BIN)/gsc-pipeline ui

clean:
	rm -rf $(VENV) .demo
