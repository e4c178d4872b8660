# TB X-ray Lab — `make demo` and `make test` work from a fresh clone (Python 3.11).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
PHANTOMS := data/phantoms
DASHBOARD_PORT ?= 8501
PUBLIC_PORT ?= 7860

.PHONY: setup browser postgres demo test lint format clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt
	cp requirements.txt $@

setup: $(STAMP)  ## create .venv with the pinned requirements

# The browser tests drive Debian's Chromium; without it they are skipped, saying so.
browser:  ## install Debian's chromium for the browser tests (needs root or sudo)
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver \
		|| echo "chromium could not be installed: the browser tests will be skipped"; }

# The store tests run against a throwaway PostgreSQL cluster they start themselves (initdb and
# pg_ctl from Debian's postgresql); without it the PostgreSQL half is skipped, saying so.
postgres:  ## install Debian's postgresql server programs for the store tests (needs root or sudo)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql \
		|| echo "postgresql could not be installed: the PostgreSQL store tests will be skipped"; }

demo: setup  ## phantom dataset, the baseline trained on it and promoted, then dashboard + public app + worker
	$(PY) -m pipeline synth --out $(PHANTOMS) --n 600
	$(PY) -m pipeline train --preset baseline --data $(PHANTOMS) --name demo-baseline
	$(PY) -m pipeline promote demo-baseline --by "make demo" \
		--note "the demo: a baseline trained on phantoms, promoted so the public app serves it"
	$(PY) -m pipeline runs
	$(PY) -m pipeline up --dashboard-port $(DASHBOARD_PORT) --public-port $(PUBLIC_PORT)

lint: setup  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint browser postgres  ## lint, then the whole test suite
	$(VENV)/bin/pytest

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf runs $(PHANTOMS) .pytest_cache .ruff_cache
