# segbench: `make help` lists the targets.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# loadgroup: the README's commands share their runs on one worker (tests/test_readme.py).
PYTEST_ARGS ?= -n 2 --dist loadgroup

.DEFAULT_GOAL := help
.PHONY: help install train test test-all lint format clean \
	bench bench-overhead bench-loader bench-flops bench-latency bench-export bench-accuracy \
	bench-throughput bench-int8 bench-gpu

help: ## Show this help.
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,sweep,bench,labelstudio]'
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

# Benchmarks write bench/out/<name>.json; bench/RESULTS.md quotes them. Run them on a quiet
# machine. CamVid is read from ../shared/datasets/camvid or $$SEGBENCH_CAMVID.
bench: bench-overhead bench-loader bench-throughput bench-flops bench-latency bench-export bench-accuracy bench-int8 ## Run every CPU benchmark (results: bench/RESULTS.md).

bench-overhead: install ## train.py's time per step vs a bare PyTorch loop (target <= 1.03).
	$(PY) -m bench.overhead $(ARGS)

bench-loader: install ## CamVid images/s through segbench's loader vs a bare decode+augment loop.
	$(PY) -m bench.loader $(ARGS)

bench-throughput: install ## Training images/s and the share of each step waiting for data (CPU; ARGS=--gpu on a GPU).
	$(PY) -m bench.throughput $(ARGS)

bench-flops: install ## segbench's FLOP counter vs fvcore and ptflops for every zoo pair.
	$(PY) -m bench.flops $(ARGS)

bench-latency: install ## Eager vs ONNX Runtime (vs CUDA/TensorRT) latency at 360x480 and 512x1024.
	$(PY) -m bench.latency $(ARGS)

bench-export: install ## Per-model export table: short CamVid run, ONNX export, parity, mIoU delta.
	$(PY) -m bench.export_zoo --steps 46 --train-args augment=crop data.batch_size=8 \
		--export-args bench.runs=5 bench.warmup=1 'bench.batch_sizes=[1]' $(ARGS)

bench-accuracy: install ## CamVid val mIoU of the zoo from scratch, field recipe (reduced on CPU; ARGS=--full on a GPU).
	$(PY) -m bench.accuracy $(ARGS)

bench-int8: install ## ONNX Runtime INT8 vs eager fp32 on CamVid: mIoU delta, ms, kernels left in fp32.
	$(PY) -m bench.int8 $(ARGS)

bench-gpu: ## On a GPU machine (after `source .gpu/env.sh`): eager vs channels_last/CUDA graphs/torch.compile.
	python3 -m bench.gpu_runtimes $(ARGS)

clean: ## Remove run outputs and caches (keeps .venv and data/).
	rm -rf logs outputs multirun .pytest_cache .ruff_cache wandb
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
