# One command for each thing a user does. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where the demo puts its instance and warehouse, and the port `make ui` serves on:
# `make ui PORT=3333`.
WORKDIR ?= .demo
PORT ?= 3000

.PHONY: install demo test lint bench ui clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## The main job: emulator + real Dagster instance and daemon + backfill into DuckDB, then a summary.
demo: $(STAMP)
	$(BIN)/gsc-pipeline demo --workdir $(WORKDIR)

## Debian's chromium for the browser test (playwright drives it; it never downloads a browser).
## Best effort: without it the test skips with a message, except in CI (GSC_REQUIRE_BROWSER=1) where it fails.
/usr/bin/chromium:
	-apt-get install -y -qq chromium >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

## The test suite (CI runs exactly this).
test: $(STAMP) /usr/bin/chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gsc_pipeline tests

bench: $(STAMP)
	$(BIN)/gsc-pipeline bench --size standard --out docs/bench

## The Dagster UI on the demo's instance; SIGTERM or Ctrl-C stops everything it started.
ui: $(STAMP)
	$(BIN)/gsc-pipeline ui --workdir $(WORKDIR) --port $(PORT)

clean:
	rm -rf $(VENV) .demo
