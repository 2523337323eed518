# The two commands:
#   make run    set up, fetch the offline default models, run the default experiment, print the comparison
#   make test   set up, run the test suite (what CI runs)
# Pass Hydra overrides with ARGS, e.g.  make run ARGS="runtime.max_samples=null task=seed_claims"

PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch that these machines have on disk. On a GPU machine: make run TORCH=torch
TORCH ?= torch==2.13.0
# Where torch comes from, e.g. https://download.pytorch.org/whl/cpu on a runner without these machines' local index
TORCH_INDEX ?=
ARGS ?=
CMAKE_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-gpu clean

setup: $(STAMP)

# constraints.txt: the versions the tests passed with (a new release of a dependency changes nothing unannounced).
# llama-cpp-python (the llamacpp engine, the default on CPUs) builds from source where PyPI has no wheel for the
# machine (several minutes; LLAVA_BUILD=OFF skips its multimodal library, which text models never load); if it cannot
# be built, the setup goes on and runs fall back to the hf engine with a notice. CMAKE_ARGS adds llama.cpp build options.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@echo "building llama-cpp-python (the llamacpp engine) from source: a few minutes on a 2-core CPU"
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $(CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[llamacpp]" \
	  || echo "notice: llama-cpp-python could not be built here; runs use the hf engine (see the README: Engines)"
	touch $(STAMP)

run: setup
	$(BIN)/harness $(ARGS)

# Lint, format and type checks first (seconds), then the tests.
test: setup
	$(BIN)/ruff check harness tests bench
	$(BIN)/ruff format --check harness tests bench
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

# On a GPU machine (make setup TORCH=torch first): the GPU tests, then a GPU smoke comparison through
# the same code path as the architecture-only profiling (random weights, CUDA timing, allocator and NVML).
test-gpu: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -m gpu -rs
	HF_HUB_OFFLINE=1 $(BIN)/harness comparison=arch_tiny task=smoke runtime=regression runtime.device=cuda hydra.run.dir=results/gpu-smoke

clean:
	rm -rf $(VENV) .pytest_cache
