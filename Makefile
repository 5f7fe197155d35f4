# Entry points used by the README and CI. `make demo` and `make test` set everything up themselves.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEV_STAMP := $(VENV)/.installed-dev-stamp

# Tests run against the real services every developer and CI machine has (see README).
TEST_DATABASE_URL     ?= postgresql://postgres@127.0.0.1:5432/test
TEST_CELERY_BROKER_URL ?= redis://127.0.0.1:6379/0

.PHONY: venv demo test lint bench bench-api bench-verification bench-pipeline clean

# The runtime (what `make demo` needs), then the test and lint tools on top (what the rest needs).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

venv: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/oblivio demo $(DEMO_ARGS)

test: venv
	$(BIN)/ruff check .
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_CELERY_BROKER_URL)} \
	$(BIN)/pytest $(PYTEST_ARGS)

# Long measurements (not tests): writes bench-out/ and the sections of docs/benchmarks.md.
# bf16 autocast (the documented runs) fits the memorisation budget on the 2-core AMD EPYC (1.6x over
# fp32); an Intel Xeon with AMX measured no gain, and CPUs without bf16 emulate it (slower): there,
# MEMORISE_ARGS= trains in fp32 (docs/benchmarks.md).
BENCH_SIZES ?= demo medforget
MEMORISE_ARGS ?= --autocast bfloat16
bench: venv bench-api
	for size in $(BENCH_SIZES); do \
		$(BIN)/python benchmarks/train_memorisation.py --size $$size $(MEMORISE_ARGS) || exit 1; done

# Verification confusion table (issue 13): every target kind over the demo test seeds, one medforget
# seed, the original and the oracles trained with the demo recipe's teaching-file replay
# (DEMO_REPLAY). Hours on 2 cores (each target trains its own retrain oracle); not part of `make bench`.
VERIFY_TARGETS ?= patient study sibling-study institution FINDINGS LAB
VERIFY_ARGS ?= --replay 60
bench-verification: venv
	$(BIN)/python benchmarks/verification.py --size demo --seeds 0 1 2 3 4 --targets $(VERIFY_TARGETS) $(VERIFY_ARGS)
	$(BIN)/python benchmarks/verification.py --size medforget --seeds 0 --targets $(VERIFY_TARGETS) $(VERIFY_ARGS)

# The pipeline's utility curve (issue "Unlearning pipeline"): 50 patient requests one after another
# through unlearn -> verify -> certify on the embedded defaults (~50 min on 2 cores).
bench-pipeline: venv
	$(BIN)/python benchmarks/pipeline_sequential.py --size sequential --requests 50

# REST API under load against PostgreSQL + its own Redis (< 60 s; needs redis-server and PostgreSQL).
BENCH_API_ARGS ?= --seconds 10 --concurrency 16
bench-api: venv
	$(BIN)/python benchmarks/api_load.py $(BENCH_API_ARGS)

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
