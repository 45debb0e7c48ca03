# tenderscan — the commands the README promises. Everything runs from a fresh clone:
# `make venv` builds .venv (CPU torch 2.13.0 pinned) and every other target depends on it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pytest-xdist processes. The tests wait on real services and subprocesses (workers loading the model)
# more than they compute, so more processes than cores pay; each starts its own redis-server and
# SeaweedFS, and a module of tests/integration/ stays in one process (tests/conftest.py).
JOBS   ?= 3
PYTEST := $(PY) -m pytest -p no:cacheprovider -n $(JOBS) --durations=15

.PHONY: help venv dev demo test test-unit test-integration test-slow check-extras chaos lint model bench clean

help:  ## list the targets, one line each
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

venv: $(STAMP)  ## create .venv and install tenderscan with every extra

# torch first and pinned: any unpinned torch requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

dev: venv  ## S3 + a private Redis for trying tenderscan by hand; prints the variables, Ctrl-C stops (tenderscan dev up)
	$(VENV)/bin/tenderscan dev up

demo: venv  ## run the whole job locally: S3 + a private Redis + API + worker, synthetic scans, verdicts
	$(PY) -m producer.dev.demo

test: venv  ## the whole suite, JOBS=3 processes in parallel, on real Redis, SeaweedFS and celery workers
	$(PYTEST) -q

test-unit: venv  ## only the fast tests (no service or worker subprocesses)
	$(PYTEST) -q -m "not integration and not extras and not slow"

test-integration: venv  ## only the tests on real Redis, SeaweedFS and celery workers
	$(PYTEST) -q -m "integration and not extras and not slow"

test-slow: venv  ## the long tests (marked slow): the review loop fine-tuning the shipped model (minutes)
	$(PY) -m pytest -p no:cacheprovider -q -m slow

chaos: venv  ## the documented fault-injection run (20,000 scans per fault; long) -> docs/RELIABILITY.md
	$(PY) -m tests.chaos.run --scans-per-fault 20000 --json docs/reliability.json

model: venv  ## rebuild models/default/ (checkpoint + evaluation.json + plots) from fixed seeds; ~25 min on 2 shared cores
	$(PY) -m models.make_default

lint: venv  ## ruff, and deptry (every import declared in pyproject.toml, every declared package used)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/deptry .

check-extras: venv  ## each image's extras (core, api, worker) in a fresh venv: installs alone, entry points import (minutes)
	$(PY) -m pytest -q -p no:cacheprovider -m extras tests/test_packaging.py

clean:  ## remove .venv, the caches and .tenderscan (dev stack, test temp dirs, model cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache .tenderscan

bench: venv  ## throughput benchmark, every contender on the same scans (a few minutes) -> docs/bench.json, docs/bench.png
	$(PY) -m producer.cli bench --json docs/bench.json --plot docs/bench.png
