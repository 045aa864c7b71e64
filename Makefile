# The project's commands. `make demo` and `make test` each set everything up first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint serve studio screenshots bench load browser check-traces vendor

$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(BIN)/activate

demo: $(BIN)/activate
	$(BIN)/python -m bots validate
	$(BIN)/python -m bots chat council --dry-run -m "What makes a good API?"

# ruff (lint and format), the import contract (the worlds import only downward), mypy.
lint: $(BIN)/activate
	$(BIN)/ruff check bots standin tests bench checks main.py
	$(BIN)/ruff format --check bots standin tests bench checks main.py
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m bots test
	$(BIN)/python -m pytest

# Headless Chromium from Debian's packages, for the test that opens the eval's HTML report.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the browser test (apt-get, about a minute)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is missing and this is not root: run 'sudo apt-get install chromium' once" \
	      "(Debian's package; the eval report's browser test needs it)"; exit 1; \
	  fi; }

serve: $(BIN)/activate
	$(BIN)/python -m bots serve

# The studio: chat with the bots as Poe shows them, and see inside each message (docs/studio.md).
studio: $(BIN)/activate
	$(BIN)/python -m bots studio

# The studio's screenshots in docs/images, taken by its browser tests.
screenshots: $(BIN)/activate browser
	STUDIO_SCREENSHOTS=docs/images $(BIN)/python -m pytest tests/studio/test_page.py -q

# The full load run: 500 concurrent three-way chats for 60 s (CI runs a short version).
load: $(BIN)/activate
	LOAD_CHATS=500 LOAD_SECONDS=60 $(BIN)/python -m pytest tests/e2e/test_load.py -s --timeout 900 -q

# The benchmark: prints its report; results go to bench-results/latest/ (not committed).
# The figures in bench-results/ are recorded on purpose, with --out (see docs/performance.md).
bench: $(BIN)/activate
	$(BIN)/python -m bench --cold-start --tracing --sampling --studio

# Our traces read in real Arize Phoenix and MLflow, each installed from PyPI into its own
# virtual environment (large; not in CI). See docs/traces.md.
check-traces: $(BIN)/activate
	test -x .venv-phoenix/bin/phoenix || { $(PYTHON) -m venv .venv-phoenix && .venv-phoenix/bin/pip install --quiet arize-phoenix==20.26.1; }
	test -x .venv-mlflow/bin/mlflow || { $(PYTHON) -m venv .venv-mlflow && .venv-mlflow/bin/pip install --quiet mlflow==3.17.2; }
	$(BIN)/python -m checks.traces --phoenix .venv-phoenix/bin/phoenix --mlflow .venv-mlflow/bin/mlflow

# The studio's vendored scripts, fetched again from the npm registry (integrity checked).
vendor:
	bash bots/studio/assets/vendor/fetch.sh
