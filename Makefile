# Quick start: `make demo` runs the demo in a local lab, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LAB_DIR ?= .lab

.PHONY: test test-unit demo lint clean-lab

$(BIN)/vm-expiry: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

lint: $(BIN)/vm-expiry
	$(BIN)/ruff check .

test-unit: lint
	$(BIN)/pytest -q

test: lint
	$(BIN)/pytest -q -m 'not browser'

demo: $(BIN)/vm-expiry
	$(BIN)/vm-expiry demo --dir $(LAB_DIR)

clean-lab: $(BIN)/vm-expiry
	$(BIN)/vm-expiry lab down --dir $(LAB_DIR)
