# Pinexa: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv generate run test test-postgres lint format migrate bench clean

help:
	@echo "make run       start the whole stack (Envoy on 127.0.0.1:8080) on its embedded defaults"
	@echo "make test      install everything needed and run every test"
	@echo "make lint      ruff, format check and mypy"
	@echo "make generate  regenerate generated/ from protos/"
	@echo "make migrate   apply the database migrations of users and auth"
	@echo "make bench     measure GetUser over gRPC and over REST through Envoy"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

generate: $(STAMP)
	$(PY) scripts/generate.py

run: $(STAMP)
	exec $(PY) -m services.devstack

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(STAMP)
	$(PY) -m services.users migrate
	$(PY) -m services.auth migrate

bench: $(STAMP)
	$(PY) scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
