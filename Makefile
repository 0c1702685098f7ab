# Two entry points (see README): `make run` and `make test`. Both build .venv first if needed.
PYTHON ?= python3
CORES ?= 2
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test lock

# The environment: exact pins from requirements.lock (~2 min; torch/torchvision are pinned to
# the builds on local disk), then the package itself in editable mode.
$(BIN)/dlc: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -r requirements.lock
	$(BIN)/python -m pip install -q --no-compile --no-deps -e .
	touch $@

# The main job on the built-in data: the Section 3 study and the shapes dataset.
run: $(BIN)/dlc
	$(BIN)/snakemake -c$(CORES)

# Lint (pyflakes, pycodestyle, import order: pyproject.toml), then the tests.
test: $(BIN)/dlc
	$(BIN)/ruff check
	$(BIN)/python -m pytest -q

# Refresh the lock file after changing dependencies in pyproject.toml.
lock: $(BIN)/dlc
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip freeze --exclude-editable > requirements.lock
