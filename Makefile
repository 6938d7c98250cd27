# Two entry points, each doing all of its own set-up from a fresh clone:
#   make demo   create .venv, install, build the sample data, train bert_mlm_tiny (~2 min on CPU), evaluate
#   make test   create or reuse .venv, run the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
DEMO_RUN ?= runs/demo

.PHONY: demo test install data lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
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

clean:
	rm -rf $(VENV) runs build *.egg-info
