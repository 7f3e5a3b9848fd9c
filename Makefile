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

test: lint typecheck unit infra-check workflow-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# Defaults (store, webhook secret) are set in scripts/run-local, after it reads .env.
run: $(STAMP)
	RUN_STORE=$(RUN_STORE) PORT=$(PORT) scripts/run-local

# The whole loop offline (tests/support/demo.py): on a terminal it keeps running until Ctrl-C.
.PHONY: demo
demo: $(STAMP)
	$(BIN)/python -m tests.support.demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

# Headless Chromium (Debian's package) for the decision page's browser test: installed
# where it is missing and we are root, otherwise a message says how.
.PHONY: chromium screenshots
unit: chromium

chromium:
	scripts/ensure-chromium

# PNGs of the decision page for docs/img (not part of test: tests leave the tree clean).
screenshots: $(STAMP) chromium
	$(BIN)/python -m tests.support.page_screenshots docs/img

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache $(RUN_STORE)

# Lint tools (checkov, zizmor, actionlint) live in their own venv: checkov pins old
# dependencies that must not meet the project's. Bootstrapped on first use.
TOOLS       := .tools
TOOLS_BIN   := $(TOOLS)/bin
TOOLS_STAMP := $(TOOLS)/.installed
WORKFLOWS   := $(wildcard .github/workflows/*.yml .github/workflows/examples/*.yml)

.PHONY: tools infra-check workflow-check package

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): tools/requirements-tools.txt
	test -x $(TOOLS_BIN)/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS_BIN)/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-tools.txt
	touch $@

# Every skipped check is justified inline in infra/*.tf (#checkov:skip=...).
infra-check: $(TOOLS_STAMP)
	$(TOOLS_BIN)/checkov -d infra --quiet --compact --skip-download

workflow-check: $(TOOLS_STAMP)
	$(TOOLS_BIN)/actionlint $(WORKFLOWS)
	$(TOOLS_BIN)/zizmor --offline --config .github/zizmor.yml $(WORKFLOWS)

# dist/function-source.zip: what Cloud Functions builds (main.py, governor/, requirements.txt).
package:
	$(PYTHON) scripts/package.py dist/function-source.zip
