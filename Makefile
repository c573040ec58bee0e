# Two commands on a fresh machine:
#   make demo   set up, then design molecules with the shipped model (a few minutes on 2 cores)
#   make test   set up, then run the test suite (what CI runs)
# Torch is installed first, pinned to the CPU build these machines carry on disk, so the
# project's torch range never pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.molshape-installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/molshape optimize --target logp --init prior --n-init 300 --seeds 1 --iterations 3 --batch 20 --strategy turbo --floor-quantile 0.5 \
		--surrogate exact --exact-max 300 --threads 1 --out $(DEMO_OUT)-$$(date +%Y%m%d-%H%M%S)

# both say how many tests ran and how many full_data tests were skipped (no ../shared/data)
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
