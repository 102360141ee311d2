# The two commands of the README: `make quickstart` (the main job) and `make test`.
# Both set up the environment first (idempotent: a second run installs nothing).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.audior1-installed

.PHONY: setup quickstart test test-all mutation bench clean

$(STAMP): pyproject.toml scripts/setup.sh constraints.txt
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/audior1 quickstart

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ""

mutation: $(STAMP)
	$(PY) scripts/mutation_check.py

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf runs build *.egg-info .pytest_cache
