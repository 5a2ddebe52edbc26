# Two commands do everything on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
HOST ?= 127.0.0.1
PORT ?= 8000

SPELLING ?= ../shared/data/spelling
SPELLER_RUN ?= runs/speller
SPELLER_VERSION ?= 1.1.0

.PHONY: serve test lint install-serve install-test clean speller-train speller-artifact speller-measure

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

## Train the speller (25 epochs of about 2 minutes each on 2 CPU cores, measured 2026-11-23; writes $(SPELLER_RUN)/best.pt, curves.png, summary.json).
speller-train: install-test
	$(PY) -m training.speller --data $(SPELLING) --out $(SPELLER_RUN)

## Export the trained speller to models/speller, tune its decoding on validation, measure it beside the peers.
speller-artifact: install-test
	$(PY) -m training.export speller --checkpoint $(SPELLER_RUN)/best.pt --out models/speller --version $(SPELLER_VERSION)
	cp $(SPELLER_RUN)/curves.png docs/speller_curves.png
	$(MAKE) speller-measure

## Tune the bundled speller's decoding on validation, measure it beside the peers, regenerate docs/speller.md.
# PYTHONHASHSEED pins pyspellchecker, whose ties between equal candidates fall by set order.
speller-measure: install-test
	$(PY) -m bench.speller_tune --data $(SPELLING) --write-manifest
	PYTHONHASHSEED=0 $(PY) -m bench.speller_quality --data $(SPELLING) --write-manifest
	$(PY) -m bench.speller_report

lint: $(PY)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
