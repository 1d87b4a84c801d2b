# Two entry points: `make demo` and `make test`. Each creates or refreshes .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench results clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

venv: $(STAMP)

# DEMO_ARGS: e.g. --retrain (train the β-VAEs instead of using data/demo_models/), --threads 1.
DEMO_ARGS ?=

demo: $(STAMP)
	$(BIN)/python -m enrich.demo --out demo-output $(DEMO_ARGS)

test: $(STAMP)
	bash scripts/ensure-chromium.sh || true
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_rank.py
	$(BIN)/python benchmarks/bench_embed.py --quick

results: $(STAMP)
	$(BIN)/python experiments/run.py figures
	$(BIN)/python experiments/check_results.py

clean:
	rm -rf $(VENV) demo-output
