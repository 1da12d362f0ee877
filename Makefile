# Set-up and entry points. Every target creates .venv (once) and installs the package.
#
#   make demo    set up, then run the README quick-start and the mock benchmark table
#   make test    set up, then lint and run the whole test suite
#   make bench-mock   re-measure the mock figures quoted in the README
#
# torch: on a machine without an NVIDIA GPU only the CPU build is installed. Here
# `pip install torch==2.13.0` resolves to the local CPU wheel; elsewhere pass
# TORCH_INDEX=https://download.pytorch.org/whl/cpu to get the CPU build from PyTorch.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench-mock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	@if ! command -v nvidia-smi >/dev/null 2>&1; then echo "no NVIDIA GPU: installing the CPU build of torch"; fi
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -c "import torch, transformers, lightning, torchmetrics; print('torch', torch.__version__, '| transformers', transformers.__version__, '| lightning', lightning.__version__, '| torchmetrics', torchmetrics.__version__)"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python examples/quickstart.py
	$(BIN)/vissparse bench --mock --keep-ratio 0.05 --keep-ratio 0.1 --keep-ratio 0.25 --keep-ratio 0.5 --keep-ratio 1.0 --n-samples 100

lint: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy src

test: lint
	$(BIN)/python -m pytest

bench-mock: setup
	$(BIN)/python benchmarks/mock_benchmark.py --out benchmarks/results --readme README.md

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .mypy_cache
