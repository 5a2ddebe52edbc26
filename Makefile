# Two commands do everything on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint install-serve install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install-serve: $(PY)
	$(PIP) -e ".[cpu]"

install-test: $(PY)
	$(PIP) -e ".[cpu,train,dev]"

## Install the serving dependencies and start the API on the bundled models.
serve: install-serve
	$(VENV)/bin/uvicorn app.main:app --host $(HOST) --port $(PORT)

## Install what the tests need, lint, and run the whole suite.
test: install-test
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(PY)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
