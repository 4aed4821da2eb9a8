# Two commands for a new user (README): `make demo` installs everything and runs the workflow on the
# default config; `make test` runs the tests. Both use the virtual environment in .venv.
PYTHON ?= python3.11
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: install demo test lint

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/snakemake

demo: install
	$(BIN)/snakemake --cores $(CORES) results/submission_va.txt results/submission_expr.txt

test: install
	$(BIN)/python -m pytest -q -rs

lint: install
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --cores 1
