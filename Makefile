# Developer and CI entry points. `make test` is what .ci/run runs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench bench-clamshell clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the crisis pipeline end to end on the embedded broker (report in reports/).
demo: $(STAMP)
	$(BIN)/crowdstream demo

## The test suite (unit + integration against the embedded broker); runs in CI.
test: $(STAMP)
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
	rm -rf $(VENV) .crowdstream reports .pytest_cache .mypy_cache .ruff_cache
