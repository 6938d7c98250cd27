# Two entry points, each doing all of its own set-up from a fresh clone:
#   make demo   create .venv, install, build the sample data, train bert_mlm_tiny (~2 min on CPU), evaluate
#   make test   create or reuse .venv, run the whole test suite
#   make lock   rewrite requirements/lock.txt from .venv, once the suite passes on it
# Both install from the committed lock (pip -c): a fresh clone gets exactly the versions the suite last passed with.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
LOCK   ?= requirements/lock.txt
DEMO_RUN ?= runs/demo

.PHONY: demo test install data lint lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c $(LOCK) --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	@test -f data/text-sample/info.json || $(BIN)/modalzoo data build text-sample

demo: data
	rm -rf $(DEMO_RUN)
	$(BIN)/modalzoo train bert_mlm_tiny run_dir=$(DEMO_RUN)
	$(BIN)/modalzoo eval $(DEMO_RUN)
	@echo "loss curve: $(DEMO_RUN)/loss_curve.png"

test: $(STAMP)
	$(BIN)/ruff check modalzoo tests benchmarks
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check modalzoo tests benchmarks

# To move a version: edit pyproject.toml, `.venv/bin/pip install -e ".[dev]"` (no -c: resolve afresh),
# `make lock test`, commit both files. Not on $(STAMP): that would install from the old lock first.
lock: | $(BIN)/python
	{ echo "# Exact versions the test suite last passed with; make demo / make test / CI install with pip -c (constraints)."; \
	  echo "# Regenerate with 'make lock' (pip freeze --all --exclude-editable of .venv) after the suite passes on it."; \
	  $(BIN)/pip freeze --all --exclude-editable; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

clean:
	rm -rf $(VENV) runs build *.egg-info
