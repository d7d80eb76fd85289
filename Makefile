# Two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp

.PHONY: run test lint migrate services install env bench

install: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

services:
	@scripts/ensure-services

# Environment, database, migrations, then api (PORT, default 3100), worker, beat, flower.
run: install services
	@scripts/run

test: install services
	$(VENV)/bin/pytest -q

# The benchmark: starts its own gateway, prints a table and MET/MISS per goal (bench/README.md).
bench: install services
	$(PY) -m bench.run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

migrate: $(STAMP) services
	@. scripts/load-env && scripts/create-database && $(VENV)/bin/alembic upgrade head

# Write .env with generated secrets without starting anything (e.g. before `docker compose up`).
env:
	@. scripts/load-env
