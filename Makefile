# Two entry points (see README): `make run` and `make test`. Both build .venv first if needed.
PYTHON ?= python3
CORES ?= 2
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test micro text-pretrained lock

# The environment: exact pins from requirements.lock (~2-3 min; torch/torchvision are pinned to
# the builds on local disk), then the package itself in editable mode.
$(BIN)/dlc: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -r requirements.lock
	$(BIN)/python -m pip install -q --no-compile --no-deps -e .
	@# Bytecode once, here (about 40 s): where PYTHONDONTWRITEBYTECODE is set, as on the
	@# development machines, each `dlc` process would otherwise compile torch, torchvision and
	@# timm from source again (a stage's imports: 12 s, against 4.5 s compiled). Files that do
	@# not compile under this Python (torch ships some 3.12-only tests) only stay uncached.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib src > /dev/null || true
	touch $@

# The main job on the built-in data: the Section 3 study and the shapes dataset.
run: $(BIN)/dlc
	$(BIN)/snakemake -c$(CORES)

# The pretrained language model beside the tiny text model (text_pretrained: all-MiniLM-L6-v2
# from its wheel) on the same pairs and prompts: outside `run`, after it.
text-pretrained: $(BIN)/dlc
	$(BIN)/snakemake -c$(CORES) results/tiny/text2code_pretrained.json

# Lint (pyflakes, pycodestyle, import order: pyproject.toml; the workflow: snakemake --lint,
# which exits 1 on a lint), then the tests.
test: $(BIN)/dlc
	$(BIN)/ruff check
	$(BIN)/snakemake --lint
	$(BIN)/python -m pytest -q

# The whole DAG at micro size (tests/micro.yaml) in results-micro/, to try a change by hand.
micro: $(BIN)/dlc
	$(BIN)/python tests/micro_dag.py results-micro

# Refresh the lock file after changing dependencies in pyproject.toml.
lock: $(BIN)/dlc
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip freeze --exclude-editable > requirements.lock
