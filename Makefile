# airloop: every target runs in the project-local virtualenv, (re)built when requirements.txt changes.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
UV_VERSION := 0.13.8
PY := $(VENV)/bin/python
# pytest-xdist processes for `make test`; each test file runs whole in one of them (its module fixtures built once)
TEST_WORKERS ?= 2

.PHONY: venv test lint demo stop lock bench bench-train bench-serving bench-drift bench-loop bench-batch bench-parse bench-log clean

venv: $(VENV)/.installed

# The stamp depends on the pins and the package metadata: editing either refreshes the environment.
$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --python $(PY) --compile-bytecode -r requirements.txt
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	@touch $@

lock:  ## re-resolve requirements.in into fully pinned requirements.txt
	@test -x $(VENV)/bin/uv || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install --quiet uv==$(UV_VERSION); }
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.11 -o requirements.txt

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

test: venv lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

demo: venv
	$(PY) -m airloop demo

stop:  ## stop the services of `make demo` from another terminal (also those a killed demo left running)
	$(PY) -m airloop stop

clean:
	rm -rf .airloop

bench: bench-train bench-serving bench-drift bench-loop bench-batch bench-parse bench-log

bench-train: venv  ## readmission training: a search at the default budget vs the fixed trials, 100k synthetic + the early half of the published file -> benchmarks/results/train.json
	OMP_NUM_THREADS=2 $(PY) benchmarks/bench_train.py --rows 100000

bench-serving: venv  ## airloop serving vs mlflow models serve under wrk -> benchmarks/results/serving.json
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) benchmarks/bench_serving.py

bench-drift: venv  ## airloop drift compare() vs Evidently DataDriftPreset at 100k x 50, and compare() alone from 10k to 10M rows -> benchmarks/results/drift.json
	$(PY) benchmarks/bench_drift.py

bench-loop: venv  ## a drifted 100k batch to the new champion answering /v1/predict, by stage -> benchmarks/results/loop.json
	OMP_NUM_THREADS=2 $(PY) benchmarks/bench_loop.py --rows 100000

bench-batch: venv  ## readmission_batch_score vs MLflow pyfunc predict on 1M rows, same chunks -> benchmarks/results/batch.json
	OMP_NUM_THREADS=2 $(PY) benchmarks/bench_batch.py --rows 1000000

bench-parse: venv  ## DagBag parse time of the DAG factory with 1, 10, 50 specs vs the same DAGs as plain TaskFlow -> benchmarks/results/parse.json
	$(PY) benchmarks/bench_parse.py

bench-log: venv  ## a day of one replica's prediction log (local + moto S3) read before/after compaction: parts, requests, s -> benchmarks/results/log.json
	$(PY) benchmarks/bench_log.py
