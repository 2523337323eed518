# The two commands:
#   make run    set up, fetch the offline default models, run the default experiment, print the comparison
#   make test   set up, run the test suite (what CI runs)
# Pass Hydra overrides with ARGS, e.g.  make run ARGS="runtime.max_samples=null task=seed_claims"

PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch that these machines have on disk. On a GPU machine: make run TORCH=torch
TORCH ?= torch==2.13.0
ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: setup
	$(BIN)/harness $(ARGS)

test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
