# The two commands: `make demo` (the weekly cycle on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

# The Postmark example provider too: CI holds it to the shared provider contract (tests/test_provider_contract.py).
install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q -e examples/postmark-provider

demo: install
	$(BIN)/digest demo

# The suite on four pytest-xdist workers: most tests wait on subprocesses, servers, PostgreSQL and
# Chromium, so four workers beat two even on two cores; loadgroup keeps an xdist_group on one worker,
# and the queue keeps the order tests/conftest.py gives it (slow tests first: tests/README.md).
# `make test PYTEST_ARGS=tests/test_x.py` runs one file serially.
PYTEST_ARGS ?= -n 4 --dist loadgroup --no-loadscope-reorder

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var test-output
