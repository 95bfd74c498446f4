# Two commands on a fresh machine: `make dev` (the UI with the demo) and `make test` (the suite).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR := $(CURDIR)/.dagster_home

# No usage tracking from any library (there is no internet here, and users expect it off).
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

# The demo keeps a persistent instance inside the project folder (git-ignored): its event log is the
# registry of record and survives restarts.
dev demo demo-reset registry: export DAGSTER_HOME := $(HOME_DIR)
dev demo demo-reset registry: export BENTOML_HOME := $(HOME_DIR)/bentoml
dev demo demo-reset registry: export MLOPS_DEMO_DATA := $(CURDIR)/data

.PHONY: dev test demo bench lint venv home demo-reset lock

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

home: $(HOME_DIR)/dagster.yaml

$(HOME_DIR)/dagster.yaml:
	mkdir -p $(HOME_DIR)
	printf 'telemetry:\n  enabled: false\n' > $@

dev: venv home
	$(BIN)/python -m assets.feed bootstrap --days 28
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

demo: venv home
	$(BIN)/python -m assets.demo

demo-reset:
	rm -rf $(HOME_DIR) data

lint: venv
	$(BIN)/ruff check mlops_dagster assets sensors tests benchmarks definitions.py
	$(BIN)/mypy

test: venv lint
	$(BIN)/pytest -q -n 2 --dist loadfile

bench: export BENTOML_HOME := $(CURDIR)/.dagster_home/bench-bentoml
bench: venv
	$(BIN)/python benchmarks/defs_load.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/sensor_tick.py
	$(BIN)/python benchmarks/serving.py

lock: venv
	$(BIN)/python -m pip install -q -e . 
	{ echo "# Exact versions for a reproducible install (Python 3.11). Regenerate after changing pyproject.toml:"; \
	  echo "#   make lock"; $(BIN)/python -m pip freeze --exclude-editable; } > requirements.lock
