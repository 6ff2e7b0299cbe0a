# `make demo` and `make test` create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BB := $(BIN)/balanced-batches
DEMO_DIR ?= demo
EXAMPLE := examples/prod_Phase2_v2

.PHONY: venv demo test test-slow lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[plots,test]'
	touch $@

venv: $(VENV)/.installed

# The original prod_Phase2_v2 configuration and its 298-file list, applied to a generated
# dataset laid out like the real one (the list's prefix is replaced, as on the grid).
demo: venv
	rm -rf $(DEMO_DIR)
	$(BB) generate $(DEMO_DIR)/data --like-file-list $(EXAMPLE)/flist.txt --entries-per-file 300 --seed 1 \
		--vector-branches
	@date +%s > $(DEMO_DIR)/.start
	$(BB) count --workdir $(DEMO_DIR)/work --prod-campaign prod_Phase2_v2 \
		--process-types $(EXAMPLE)/process_types.yaml --pt-abseta-bins $(EXAMPLE)/binning.yaml \
		--input-file-list $(EXAMPLE)/flist.txt \
		--replace-file-prefix "/storage/gridka-nrg/aakhmets/TauML@$(abspath $(DEMO_DIR))/data" \
		--splits train=0.8,validation=0.1,test=0.1
	$(BB) summary --workdir $(DEMO_DIR)/work --pileup PU200 --events-per-batch-type 15 \
		> $(DEMO_DIR)/work/summary.txt
	tail -n 3 $(DEMO_DIR)/work/summary.txt
	$(BB) plan --workdir $(DEMO_DIR)/work --pileup PU200 --events-per-batch-type 15 \
		--batches 8 --batches-per-file 2 --output-directory $(DEMO_DIR)/batches --weights
	$(BB) run --workdir $(DEMO_DIR)/work
	$(BB) check --workdir $(DEMO_DIR)/work
	$(BB) report --workdir $(DEMO_DIR)/work --output $(DEMO_DIR)/report
	@echo "pipeline (count to report) took $$(( $$(date +%s) - $$(cat $(DEMO_DIR)/.start) )) s"
	@echo "input files:      $(DEMO_DIR)/data/flist.txt"
	@echo "counts, summary:  $(DEMO_DIR)/work/counts.json, $(DEMO_DIR)/work/summary.json, $(DEMO_DIR)/work/summary.txt"
	@echo "balanced batches: $(DEMO_DIR)/batches/{train,validation,test}/batch*.root (tree taus),"
	@echo "                  with provenance.json and statistics.json in each split's directory"
	@echo "report:           $(DEMO_DIR)/report/report.html (plots: $(DEMO_DIR)/report/*.png)"

test: venv
	$(BIN)/python -m pytest -m "not slow"

# BB_REQUIRE_SERVICES=1: a service a test starts itself (the HTCondor pool in its Debian chroot)
# that cannot be set up fails the test instead of skipping it; only a machine that can never run
# it (not Linux, not root) still skips (tests/services.py).
test-slow: venv
	BB_REQUIRE_SERVICES=1 $(BIN)/python -m pytest -m slow

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

# Benchmarks against the I/O limit (BENCHMARKS.md); SIZE=medium or large for the big datasets.
SIZE ?= small
bench: venv
	$(BIN)/python -m benchmarks.harness --size $(SIZE)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
