# Two commands: `make demo` and `make test`. Everything else here serves them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# llama-cpp-python has no portable wheel on PyPI, so we build it once and keep the wheel
# outside the repo. The build is *portable* by default: llama.cpp's native CPU detection
# produces a library that segfaults in llama_decode on AMX (Sapphire Rapids) CPUs with Q4_K
# weights (ggml-org/llama.cpp#20824), and a native wheel in a shared cache crashes on any
# machine with fewer instructions than the one that built it. `make LLAMA_NATIVE=1 install`
# opts into a native build for this machine only.
WHEELS ?= $(HOME)/.cache/agentflow-wheels
LLAMA_VERSION := 0.3.36
LLAMA  := llama-cpp-python==$(LLAMA_VERSION)
LLAMA_NATIVE ?= 0
ifeq ($(LLAMA_NATIVE),1)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=ON
# A native wheel is only valid on a CPU with exactly these flags.
LLAMA_CPU := $(shell grep -m1 -E '^(flags|Features)' /proc/cpuinfo | sha256sum | cut -c1-12)
else
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_CPU := portable
endif
# The cache folder is keyed by version *and* flags: a wheel built with other flags (an old
# native one) sits in another folder and is never picked up.
LLAMA_KEY    := $(shell echo '$(LLAMA) $(LLAMA_CMAKE_ARGS) $(LLAMA_CPU)' | sha256sum | cut -c1-12)
LLAMA_WHEELS := $(WHEELS)/llama-$(LLAMA_VERSION)-$(LLAMA_KEY)
# Reinstall only when what we install from changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | sha256sum | cut -c1-12)-$(LLAMA_KEY)
APT_PACKAGES := redis-server postgresql chromium

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export LANGGRAPH_CLI_NO_ANALYTICS := 1
export LANGGRAPH_NO_VERSION_CHECK := true

.PHONY: help install services demo test lint typecheck lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the project (skipped when nothing changed)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# The CPU build of torch lies on this disk; install it first or pip pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	@ls "$(LLAMA_WHEELS)"/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	  { echo "building $(LLAMA) from source once ($(if $(filter 1,$(LLAMA_NATIVE)),native for this CPU,portable); 6-20 minutes on 2 cores)"; \
	    mkdir -p "$(WHEELS)" && tmp=$$(mktemp -d "$(WHEELS)/build.XXXXXX") && \
	    CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	      $(BIN)/pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
	      -w "$$tmp" $(LLAMA) && \
	    rm -rf "$(LLAMA_WHEELS)" && mv "$$tmp" "$(LLAMA_WHEELS)"; }
	@# --force-reinstall: a .venv that holds another build of the same version must not keep it.
	$(BIN)/pip install -q --no-deps --force-reinstall "$(LLAMA_WHEELS)"/llama_cpp_python-*.whl
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@# Load the GGUF and decode a few tokens in a child process: a crashing native library
	@# stops the install here with the fix, not halfway through the demo or the suite.
	$(BIN)/agentflow models smoke
	@rm -f $(VENV)/.installed-*
	@touch $@

services: ## Install the Debian servers the integration tests start (redis, postgres, chromium)
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: install ## Run the reference agent on the embedded defaults
	$(BIN)/agentflow demo

lint: install ## ruff (lint + format check)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install ## mypy over the packages
	$(BIN)/mypy

test: install services lint typecheck ## Install, then lint, type-check and run the whole suite
	@# Through the crash guard: a native crash still names the test and fails the run.
	$(BIN)/python -m tests.crashguard -q

lock: ## Re-pin requirements.lock from the current .venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^agentflow' | sed 's|^llama_cpp_python @ .*|$(LLAMA)|' > requirements.lock

clean: ## Remove the venv and embedded state (keeps the wheel cache)
	rm -rf $(VENV) .agentflow .pytest_cache .mypy_cache .ruff_cache
