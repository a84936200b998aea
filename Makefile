# The two set-up commands of the README are `make drive` and `make test`.
# Both create .venv on first use and are quick no-ops for the install step afterwards.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
DRIVE_SECONDS ?= 20

.PHONY: drive test lint typecheck pytest bench system-packages clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The main job needs the car runtime plus the audit (torch + shap); the car itself needs neither.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[explain]'
	touch $@

# The dev extras include `camera` (PyGObject builds from source): the Debian build packages come first.
$(DEV_STAMP): pyproject.toml | $(BIN)/python system-packages
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(RUN_STAMP)

system-packages:
	@bash tools/install-system-packages.sh

drive: $(RUN_STAMP)
	DRIVE_SECONDS=$(DRIVE_SECONDS) bash tools/main-job.sh

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP) system-packages
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

clean-venv:
	rm -rf $(VENV)
