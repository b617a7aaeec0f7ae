# VerifyGuard — `make run` serves on :8000 with SQLite (and prints a console sign-in link),
# `make test` runs every test (the browser ones need /usr/bin/chromium).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export VERIFYGUARD_DATABASE_URL ?= sqlite+aiosqlite:///./verifyguard.db

.PHONY: run test check lint format typecheck migrate install bench soak vendor clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/verifyguard db upgrade

run: migrate
	$(BIN)/verifyguard serve --host 0.0.0.0 --port 8000

test: $(STAMP)
	$(BIN)/pytest --cov=app --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app tests migrations
	$(BIN)/ruff format --check app tests migrations
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

format: $(STAMP)
	$(BIN)/ruff format app tests migrations
	$(BIN)/ruff check --fix app tests migrations

# Refreshes the vendored test files (axe-core) from npm, with their manifest; needs npm.
vendor: $(STAMP)
	$(BIN)/python -m tests.web.vendor.refresh

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# PostgreSQL, 10 minutes at 300 request events/s (SOAK_ARGS="--minutes 2" for a short one;
# SOAK_ARGS="--private-postgres" on a private cluster with the production settings,
# docs/operations.md).
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage verifyguard.db*
