# `make demo` and `make test` work on a fresh machine: they create .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck clean

$(STAMP): pyproject.toml package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,serve,gather,dev]"
# ONNX Runtime Web (package-lock.json) into node_modules/, for `ursa export --web` only:
# without npm everything else still works (.ci/run installs nodejs and npm).
	if command -v npm >/dev/null; then npm ci --no-audit --no-fund --ignore-scripts \
	  || echo "npm ci failed: ursa export --web and its browser tests need node_modules/"; \
	else echo "npm not found: ursa export --web needs it (apt-get install npm; npm ci)"; fi
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ursa demo --folder demo-output

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf demo-output .pytest_cache .mypy_cache .ruff_cache
