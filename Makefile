# The two commands the README opens with, plus the benchmark.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# pytest-xdist workers for `make test` (TEST_WORKERS=1 runs the suite in one process)
TEST_WORKERS ?= 2

.PHONY: run test bench lint clean services

$(PY):
	$(PYTHON) -m venv $(VENV) || { \
	  echo "python venv unavailable; installing python3-venv"; \
	  apt-get update -q && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP) $@

run: $(STAMP)
	$(VENV)/bin/venue serve

# What the tests need beside Python (nats-server, PostgreSQL, Chromium): each
# scripts/install-*.sh installs one from Debian's packages when missing, and is quick when not.
services:
	@for script in scripts/install-*.sh; do [ -e "$$script" ] || continue; sh "$$script" || exit 1; done

test: $(TEST_STAMP) services
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	@# The tests start the venue in a few hundred processes; where the environment sets
	@# PYTHONDONTWRITEBYTECODE (this sandbox does), each compiled the project again (~0.6 s).
	$(PY) -m compileall -q engine settlement core gateway client cli cluster bench replay
	@# Two workers, each given whole files (module fixtures such as a PostgreSQL or a browser
	@# start once): run one after another the tests kept a 2-core machine half idle, waiting
	@# on the processes, timers and sockets they start (7 CPU-minutes in 15 wall-minutes).
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(TEST_STAMP)
	$(VENV)/bin/venue bench all
	$(VENV)/bin/pytest tests/bench/test_engine_micro.py --benchmark-enable --benchmark-only

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
