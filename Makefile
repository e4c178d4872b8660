# TB X-ray Lab — `make demo` and `make test` work from a fresh clone (Python 3.11).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
PHANTOMS := data/phantoms

.PHONY: setup demo test lint format clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt
	cp requirements.txt $@

setup: $(STAMP)  ## create .venv with the pinned requirements

demo: setup  ## make the phantom dataset, train the baseline on it, print its metrics
	$(PY) -m pipeline synth --out $(PHANTOMS) --n 600
	$(PY) -m pipeline train --preset baseline --data $(PHANTOMS) --name demo-baseline
	$(PY) -m pipeline runs

lint: setup  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint  ## lint, then the whole test suite
	$(VENV)/bin/pytest

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf runs $(PHANTOMS) .pytest_cache .ruff_cache
