# The commands the README shows. Each one sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# bench/ may not exist yet on every branch.
LINT_DIRS := kisflow tests examples tools $(wildcard bench)

.PHONY: install run test lint format bench clean system-deps docs dashboard

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(PY) examples/quickstart/main.py
	$(PY) examples/yaml_sqlite/main.py
	$(PY) examples/stream_checkpoint/main.py

# lint-imports checks the layers contract in pyproject.toml: no import cycle in kisflow/.
lint: install
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/ruff format --check $(LINT_DIRS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# Debian packages the tests use: a real redis-server (the redis connector's tests start one
# on a loopback port), Graphviz's dot (`kisflow graph --format svg/png`) and headless
# Chromium with its driver (the dashboard's browser test).
system-deps:
	@command -v redis-server >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server)
	@command -v dot >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y graphviz)
	@(command -v chromium && command -v chromedriver) >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

test: install lint system-deps
	$(PY) -m pytest

# The documentation site: docs/ plus an API reference from the docstrings and SVG pictures
# of the example flows (tools/docs_hooks.py), into site/. --strict: a broken link or anchor,
# a page missing from the nav or an unresolved reference fails. tests/test_docs_site.py
# builds it the same way, so make test builds it too.
docs: install system-deps
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

format: install
	$(VENV)/bin/ruff format $(LINT_DIRS)
	$(VENV)/bin/ruff check --fix $(LINT_DIRS)

# The live dashboard on an example stream for about 20 s; its URL is printed first.
dashboard: install
	$(PY) examples/dashboard/main.py

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist site *.egg-info .mypy_cache .ruff_cache .pytest_cache
