# Two commands for a fresh clone: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export WB_WORKSPACE ?= $(CURDIR)/wb-workspace/demo

.PHONY: demo test venv clean

# Stamps re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[test]"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# Lint and type checks first (seconds, then ~1 min cold for mypy): they fail fast before the long pytest run.
test: $(VENV)/.installed-test
	bash scripts/install_browser.sh  # Chromium + chromedriver for the browser test, where missing
	bash scripts/install_postgres.sh  # PostgreSQL server binaries for the tests marked backends, where missing
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --timeout 1200

clean:
	rm -rf wb-workspace
