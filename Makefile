# Needs only Python 3.11 and Node.js (npm installs the dashboard's browser libraries and runs its JS tests).
# `make run` starts everything with embedded defaults; `make test` runs the whole suite.

PY ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV ?= .venv
HTTP_PORT ?= 8000
WS_PORT ?= 8001
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2
# Workers of the live run. Those tests wait on servers, ticks and timeouts much of the time, so a
# third worker (one lane per xdist group plus one for the rest) fills cores two leave idle; the
# CI run was 27 s under its 20 minutes with 2 (README, Testing).
LIVE_WORKERS ?= 3

BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
STAMP := $(VENV)/.installed

# The Procfile's processes read these.
export HTTP_PORT WS_PORT

.DEFAULT_GOAL := help
.PHONY: help venv run stop test test-fast lint format clean

help:
	@echo "make run        migrate, seed demo data, start web (HTTP :$(HTTP_PORT)), ws (:$(WS_PORT)), worker, beat, market, monitor"
	@echo "make test       run the whole test suite: non-live tests on $(PYTEST_WORKERS) workers, then the live ones on $(LIVE_WORKERS) (PYTEST_ARGS='...' passes options to pytest)"
	@echo "make test-fast  the suite without the tests that start servers, workers, the market or chromium"
	@echo "                (-m 'not live'), on PYTEST_WORKERS=$(PYTEST_WORKERS) parallel workers: a minute or two"
	@echo "make lint       ruff check, ruff format --check, mypy, lint-imports (app layers), eslint"
	@echo "make format     ruff format and ruff check --fix"
	@echo "make stop       stop the embedded Redis server"
	@echo "make clean      make stop, then remove var/ (database, logs, static files; keeps .venv)"

# --- environments ---------------------------------------------------------------------------------
$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required (found: $$($(PY) --version 2>&1))"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-installs whenever a requirements file changes.
$(STAMP): $(BIN)/python $(wildcard requirements*.txt)
	@echo "Installing Python dependencies into $(VENV) ..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# --- running --------------------------------------------------------------------------------------
# Node dependencies first: collectstatic copies the browser libraries out of node_modules.
run: venv node_modules/.installed
	$(MANAGE) migrate --noinput
	$(MANAGE) ensure_indexes
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) seed_demo --if-empty
	@echo
	@echo "  HTTP (dashboard, REST API):  http://127.0.0.1:$(HTTP_PORT)"
	@echo "  WebSockets (streams):        ws://127.0.0.1:$(WS_PORT)"
	@echo
	exec $(BIN)/python -m config.process_manager Procfile

stop:
	@if [ -x $(BIN)/python ]; then \
		$(BIN)/python -c "import os; from pathlib import Path; \
	from config.embedded_redis import embedded_redis_stop; \
	var = Path(os.environ.get('VAR_DIR', 'var')); \
	print('Stopped the embedded Redis in', var) if embedded_redis_stop(var) \
	else print('No embedded Redis running in', var)"; \
	else echo "No $(VENV): nothing to stop"; fi

# --- quality --------------------------------------------------------------------------------------
# The JS unit tests (node --test, seconds) run first; they are backend-neutral, so the
# DB_TESTS_ONLY pass skips them. Then the Python suite in two runs that together are all of it:
# the tests not marked `live` on PYTEST_WORKERS xdist workers (each with its own test database and
# Redis key prefix), then the live ones (real servers, workers, the market, chromium; free ports,
# the worker's own database and key prefix) on LIVE_WORKERS workers, with the CPU-bound ones in two
# xdist groups, each kept on one worker: "load" (benchmark runs, the schema fuzzer) and "stacks"
# (chromium, whole-stack runs), so two of a kind never compete; the other workers take the rest.
# Exit status 5 (no tests collected) is fine for one run when the other ran tests (PYTEST_ARGS may
# select only one kind), and for both only on the DB_TESTS_ONLY pass, where it means that no test
# depends on the database backend.
test: venv node_modules/.installed
	@if [ "$${DB_TESTS_ONLY:-}" = 1 ]; then echo "DB_TESTS_ONLY=1: skipping npm test (ran in the first pass)"; \
	else npm test; fi
	@echo "pytest: the tests not marked live, on $(PYTEST_WORKERS) workers"; \
	fast=0; $(BIN)/pytest -m "not live" -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || fast=$$?; \
	echo "pytest: the live tests, on $(LIVE_WORKERS) workers (each group of CPU-bound ones on one of them)"; \
	live=0; $(BIN)/pytest -m live -n $(LIVE_WORKERS) --dist loadgroup $(PYTEST_ARGS) || live=$$?; \
	for s in $$fast $$live; do \
		if [ $$s -ne 0 ] && [ $$s -ne 5 ]; then exit $$s; fi; \
	done; \
	if [ $$fast -eq 5 ] && [ $$live -eq 5 ]; then \
		if [ "$${DB_TESTS_ONLY:-}" = 1 ]; then \
			echo "DB_TESTS_ONLY=1: no test depends on the database backend; nothing to run."; \
		else echo "no tests collected"; exit 5; fi; \
	fi

# The fast lane: every test but the live ones (real servers, workers, the market, chromium; the root
# conftest.py refuses a server started by an unmarked test), on xdist workers, each with its own
# test database and Redis key prefix (tests/settings.py, tests/conftest.py).
test-fast: venv node_modules/.installed
	npm test
	$(BIN)/pytest -m "not live" -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# mypy (the longest, on one core) runs beside the others; its output is printed after theirs.
lint: venv node_modules/.installed
	@status=0; mypy_log=$$(mktemp); \
	$(BIN)/mypy . > $$mypy_log 2>&1 & mypy_pid=$$!; \
	echo "ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "ruff format --check ."; $(BIN)/ruff format --check . || status=1; \
	echo "lint-imports"; $(BIN)/lint-imports || status=1; \
	echo "eslint ."; npx --no-install eslint . || status=1; \
	echo "mypy ."; wait $$mypy_pid || status=1; cat $$mypy_log; rm -f $$mypy_log; \
	exit $$status

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: stop
	rm -rf var
