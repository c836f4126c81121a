# Two commands: `make demo` and `make test`. Everything else here serves them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Wheels we build from source (llama-cpp-python takes ~20 min on 2 cores) are kept here,
# outside the repo, so a fresh clone or a new .venv never rebuilds them.
WHEELS ?= $(HOME)/.cache/agentflow-wheels
LLAMA  := llama-cpp-python==0.3.36
# Reinstall only when what we install from changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | sha256sum | cut -c1-16)
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
	@ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	  { echo "building $(LLAMA) from source once (about 20 minutes on 2 cores)"; \
	    CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip wheel -q --no-deps -w $(WHEELS) $(LLAMA); }
	$(BIN)/pip install -q --find-links $(WHEELS) -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
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
	$(BIN)/pytest -q

lock: ## Re-pin requirements.lock from the current .venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^agentflow' | sed 's|^llama_cpp_python @ .*|$(LLAMA)|' > requirements.lock

clean: ## Remove the venv and embedded state (keeps the wheel cache)
	rm -rf $(VENV) .agentflow .pytest_cache .mypy_cache .ruff_cache
