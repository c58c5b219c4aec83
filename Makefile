# The two commands a new user needs (see README.md):
#   make run    the whole cloud on this machine, in the foreground
#   make test   the whole test suite
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test deps test-deps lint bench clean-test

run: deps
	$(PYTHON) -m deploy.allinone

test: test-deps
	$(PYTHON) -m pytest $(PYTEST_ARGS)

deps:
	@./deploy/install.sh

test-deps:
	@./deploy/install.sh --test

lint: test-deps
	$(VENV)/bin/ruff check .

bench: test-deps
	$(PYTHON) bench/create_latency.py
	$(PYTHON) bench/idle.py
	$(PYTHON) bench/auth_overhead.py
	$(PYTHON) bench/power_latency.py
	$(PYTHON) bench/ipam.py
	$(PYTHON) bench/console.py
