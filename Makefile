# The two commands the README starts with: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: demo test lint typecheck migrations-check check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Sets up the example project (SQLite) with the bundled demo authorization server and runs it.
demo: $(BIN)/python
	$(BIN)/pip install -q -e ".[demo]"
	$(BIN)/python manage.py demo --port $(PORT)

# Installs the test extras, makes sure PostgreSQL and chromium are there, runs the whole suite
# (and the refresh's SQL a second time with PostgreSQL prepared statements).
test: $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	./scripts/ensure-services.sh
	OAUTH2_INTEGRATOR_REQUIRE_BROWSER=1 $(BIN)/pytest
	# The refresh's own SQL once more, with Django's PostgreSQL prepared statements on.
	TEST_DATABASE_PREPARED=1 $(BIN)/pytest -q -p no:randomly tests/test_prepared.py \
		tests/test_refresh_claim.py tests/test_refresh_races.py tests/test_events.py \
		tests/test_concurrency.py tests/test_sweep.py tests/test_transport_pooling.py \
		tests/test_refresh_read.py

lint: $(BIN)/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/python
	$(BIN)/mypy oauth2_integrator example_project

migrations-check: $(BIN)/python
	TEST_DATABASE_URL=sqlite:///:memory: DJANGO_SETTINGS_MODULE=tests.settings \
		$(BIN)/python -m django makemigrations --check --dry-run

check: lint typecheck migrations-check test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache db.sqlite3
