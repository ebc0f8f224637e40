# segbench: `make help` lists the targets.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?= -n 2

.DEFAULT_GOAL := help
.PHONY: help install train test test-all lint format bench clean

help: ## Show this help.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,sweep,bench]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv (if missing) and install segbench with dev extras; fast when done.

train: install ## Train the default config (synthetic streets, U-Net/MobileNetV2); ARGS="model=... ..." to override.
	$(PY) train.py $(ARGS)

test: install ## Run the fast test suite.
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: install ## Run every test, slow ones included.
	$(PY) -m pytest $(PYTEST_ARGS) -m "slow or not slow"

lint: install ## ruff check + format check.
	$(VENV)/bin/ruff check src tests bench *.py
	$(VENV)/bin/ruff format --check src tests bench *.py

format: install ## Apply ruff's fixes and formatting.
	$(VENV)/bin/ruff check --fix src tests bench *.py
	$(VENV)/bin/ruff format src tests bench *.py

bench: install ## Run every benchmark in bench/ (results: bench/RESULTS.md).
	@echo "benchmarks: see bench/README.md"

clean: ## Remove run outputs and caches (keeps .venv and data/).
	rm -rf logs outputs multirun .pytest_cache .ruff_cache wandb
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
