# Entry points for newcomers and CI alike: `make help` lists them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
# Keep the order the recipes promise (lint, then typecheck, then tests) even under `make -j`.
.NOTPARALLEL:
.PHONY: help venv services demo test lint typecheck format bench clean

help: ## List the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create .venv and install sensorstream with its dev tools

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# Compile the NDJSON scanner once now; Numba caches it, so no run pays for it later.
	$(BIN)/python -c 'from sensorstream.readings.scanner import load_kernels; load_kernels()'
	@touch $@

services: ## Install and start what the integration tests use: PostgreSQL, Mosquitto, Kafka, Chromium
	bash scripts/chromium.sh install
	bash scripts/postgres.sh install
	bash scripts/postgres.sh start
	bash scripts/mosquitto.sh install
	bash scripts/mosquitto.sh start
	bash scripts/kafka.sh install
	bash scripts/kafka.sh start

demo: venv ## Run every scenario live at once; their index at http://127.0.0.1:8000/
	$(BIN)/sensorstream demo all --history 2m --open

test: venv lint typecheck ## Lint, type-check, then run the whole test suite
	$(BIN)/pytest

lint: venv ## Check style, formatting and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: venv ## Type-check the package and the tests (mypy strict)
	$(BIN)/mypy

format: venv ## Reformat and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv ## Run the benchmarks
	$(BIN)/python benchmarks/w1_tumbling.py
	$(BIN)/python benchmarks/storage_ratio.py

clean: ## Remove caches and build outputs (keeps .venv and stored data)
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -exec rm -rf {} +
