# Developer and CI entry points. `make test` is what .ci/run runs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Browser tests drive Debian's chromium (never a browser a test tool downloads).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck check bench bench-clamshell browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the crisis pipeline end to end on the embedded broker (report in reports/).
demo: $(STAMP)
	$(BIN)/crowdstream demo

## Debian's chromium and chromium-driver for the browser tests (installed once).
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver

## The test suite (unit + integration against the embedded broker, browser tests in
## headless chromium); runs in CI.
test: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest -q

## Lint and type checks; run in CI.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## Throughput and latency benchmark (not a test; JSON on stdout and in reports/).
bench: $(STAMP)
	$(BIN)/python bench/throughput.py

## CLAMShell's experiments in simulation (not a test; JSON and a table; docs/clamshell.md).
bench-clamshell: $(STAMP)
	$(BIN)/python bench/clamshell.py

clean:
	rm -rf $(VENV) .crowdstream reports test-output .pytest_cache .mypy_cache .ruff_cache
