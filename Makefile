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

.PHONY: dev test demo bench lint venv home demo-reset lock wheelhouse image

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

# The user-code image (deploy/Dockerfile; README "Deploy"). `make image` builds it from a wheelhouse of
# the lock with no network inside the build (what air-gapped users need, and what CI tests);
# `make image INSTALL_FROM=index` lets pip inside the build install the lock from the package index.
IMAGE ?= mlops-dagster-user-code:latest
BASE_IMAGE ?= python:3.11-slim-bookworm
INSTALL_FROM ?= wheelhouse
DOCKER_BUILD_FLAGS ?=
CACHE_DIR ?= $(HOME)/.cache/mlops-dagster
WHEELS := $(CACHE_DIR)/wheelhouse
# The image's platform: CPython 3.11 on glibc <= 2.36 (Debian bookworm), x86_64.
# pip takes --platform literally: every manylinux level up to 2.36 is listed, legacy names too.
WHEEL_PLATFORM := --python-version 3.11 --implementation cp \
  $(foreach v,$(shell seq 36 -1 5),--platform manylinux_2_$(v)_x86_64) \
  --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64

# Wheels for every line of the lock (plus setuptools, to build the project offline), kept in
# $(WHEELS) and refreshed only when the lock's content changes. Packages published as sdists only are
# built into wheels on this machine, which must then be Linux x86_64 with Python 3.11.
wheelhouse:
	@mkdir -p $(WHEELS)/sdist
	@lock_id=$$(sha256sum requirements.lock | cut -c1-16); \
	if [ -f "$(WHEELS)/.complete-$$lock_id" ]; then echo "wheelhouse up to date: $(WHEELS)"; exit 0; fi; \
	set -e; \
	$(PY) -m pip download -q --no-deps $(WHEEL_PLATFORM) --dest $(WHEELS) \
	  -r requirements.lock "setuptools>=68" wheel; \
	for sdist in $(WHEELS)/*.tar.gz $(WHEELS)/*.zip; do \
	  [ -e "$$sdist" ] || continue; \
	  echo "building a wheel for $$(basename $$sdist) (no wheel for cp311 manylinux x86_64)"; \
	  $(PY) -m pip wheel -q --no-deps --wheel-dir $(WHEELS) "$$sdist"; \
	  mv "$$sdist" $(WHEELS)/sdist/; \
	done; \
	touch "$(WHEELS)/.complete-$$lock_id"; \
	echo "wheelhouse ready: $(WHEELS) ($$(ls $(WHEELS)/*.whl | wc -l) wheels)"

ifeq ($(INSTALL_FROM),index)
image:
	docker build --force-rm $(DOCKER_BUILD_FLAGS) -f deploy/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  -t $(IMAGE) .
else
# docker reads nothing outside the build context: the wheels are hard-linked (else copied) into
# ./wheelhouse, a folder that ignores itself in git. `--network none` proves the build is offline.
image: wheelhouse
	rm -rf wheelhouse && mkdir wheelhouse && printf '*\n' > wheelhouse/.gitignore
	cp -l $(WHEELS)/*.whl wheelhouse/ 2>/dev/null || cp $(WHEELS)/*.whl wheelhouse/
	docker build --network none --force-rm $(DOCKER_BUILD_FLAGS) -f deploy/Dockerfile \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg WHEELHOUSE=wheelhouse -t $(IMAGE) .
endif
