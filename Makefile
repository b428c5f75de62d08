# The README's commands. Each target creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision are installed first as a matching pair (see the README's notes).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_HOME ?= $(CURDIR)/.demo

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test,lint,stack]'
	touch $(STAMP)

# Retrain on the committed fixture photos, then colorize grayscale copies (CPU, offline).
demo: $(STAMP)
	COLORIZATION_HOME="$${COLORIZATION_HOME:-$(DEMO_HOME)}" $(PY) -m flows.demo

test: $(STAMP)
	$(PY) -m pytest

# ruff (lint + import order) and mypy (types), both configured in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/shellcheck infra/*.sh

bench: $(STAMP)
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(DEMO_HOME) build *.egg-info
