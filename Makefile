# Quick start: `make demo` runs the demo in a local lab, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LAB_DIR ?= .lab

.PHONY: test test-unit test-horizon test-browser demo lint clean-lab system-packages

$(BIN)/vm-expiry: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

lint: $(BIN)/vm-expiry
	$(BIN)/ruff check .

test-unit: lint
	$(BIN)/pytest -q

# The lab needs Debian's RabbitMQ; everything else it installs into its own venvs.
system-packages:
	@test -x /usr/lib/rabbitmq/bin/rabbitmq-server || { \
		echo "installing Debian's rabbitmq-server for the lab"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends rabbitmq-server >/dev/null; }

test-horizon:
	horizon_patches/run-tests.sh

test: lint system-packages test-horizon
	$(BIN)/pytest -q -m 'not browser'

# Headless Chromium against a Horizon dev server wired to the lab (installs chromium via apt).
test-browser: $(BIN)/vm-expiry system-packages
	horizon_patches/run-browser-test.sh

demo: $(BIN)/vm-expiry system-packages
	$(BIN)/vm-expiry demo --dir $(LAB_DIR)

clean-lab: $(BIN)/vm-expiry
	$(BIN)/vm-expiry lab down --dir $(LAB_DIR)
