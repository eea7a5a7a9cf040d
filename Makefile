# The commands the README shows. Each one sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(PY) examples/quickstart/main.py

lint: install
	$(VENV)/bin/ruff check kisflow tests examples bench
	$(VENV)/bin/ruff format --check kisflow tests examples bench
	$(VENV)/bin/mypy

test: install lint
	$(PY) -m pytest

format: install
	$(VENV)/bin/ruff format kisflow tests examples bench
	$(VENV)/bin/ruff check --fix kisflow tests examples bench

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
