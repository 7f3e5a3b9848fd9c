# Every target bootstraps .venv from the pinned requirement files on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8080
RUN_STORE ?= $(CURDIR)/.governor-state

.PHONY: venv test lint typecheck unit run bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

run: $(STAMP)
	@mkdir -p $(RUN_STORE)
	GOVERNOR_STORE_URL=$${GOVERNOR_STORE_URL:-file://$(RUN_STORE)} \
	GOVERNOR_WEBHOOK_SECRET=$${GOVERNOR_WEBHOOK_SECRET:-local-dev-secret} \
	PORT=$(PORT) scripts/run-local

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache $(RUN_STORE)
