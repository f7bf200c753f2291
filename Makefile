# The two commands a new user needs: `make demo` and `make test` (both set everything up).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY ?= 0

.PHONY: install demo test unit integration e2e bench-tests lint format validate build lock bench bench-quick bench-split bench-export bench-run cost mariadb clean

install: $(STAMP)

# The venv runs Lambda's Python, 3.13: scripts/find-python313.sh finds one (PATH, then pyenv) or
# says what to install; `make install PYTHON=/path/to/python3.13` names one. Both packages require
# 3.13 (the code uses its syntax). A venv of another Python is made anew.
$(STAMP): pyproject.toml functions/pyproject.toml requirements/dev.txt
	@python="$${PYTHON:-$$(scripts/find-python313.sh)}" || exit 1; \
	version() { "$$1" -c 'import sys; print(sys.version_info[:2])'; }; \
	if [ -x $(PY) ] && [ "$$(version $(PY))" != "$$(version "$$python")" ]; then \
	  echo "$(VENV) runs Python $$(version $(PY)): making it anew"; rm -rf $(VENV); fi; \
	echo "$(VENV): $$("$$python" --version) ($$python)"; "$$python" -m venv $(VENV)
	# Two packages: the deployed one (functions/) and the local tools around it (tools/), every
	# dependency at the version requirements/dev.txt locks (`make lock` refreshes it). Installed
	# by uv, the lock's own resolver: ~1 min from nothing, where pip took 5-6 here.
	$(PY) -m pip install --quiet "$$(grep '^uv==' requirements/dev.txt)"
	# editable_mode=compat: a plain path in a .pth file, where setuptools' default is an import
	# hook that loads pathlib, re and urllib at every start (measured: a bare `python -c pass` in
	# the venv ran 123 M instructions with the hook, 72 M without; every command pays it).
	$(VENV)/bin/uv pip install --quiet --python $(PY) -c requirements/dev.txt \
		-C editable_mode=compat -e ./functions -e '.[dev]'
	touch $(STAMP)

# The locks, resolved by uv for the platform each runs on, not for this machine: the dev venv
# (Linux x86_64, CPython 3.13) and each layer (Lambda's python3.13: Amazon Linux 2023, aarch64).
# Each layer is constrained by the dev lock, so the tests run the versions Lambda gets. `make lock`
# keeps every pin that still fits (after editing a pyproject.toml or a requirements.in);
# `make lock UPGRADE=1` moves every pin to the newest release allowed. Then `make install test`.
UV ?= $(VENV)/bin/uv
COMPILE = $(UV) pip compile --quiet --python-version 3.13 --custom-compile-command 'make lock' \
	$(if $(UPGRADE),--upgrade)
lock:
	$(COMPILE) --python-platform x86_64-manylinux_2_28 requirements/dev.in -o requirements/dev.txt \
		--no-emit-package collage-tools --no-emit-package tiktok-cover-collage
	for layer in layers/*/; do \
		$(COMPILE) --python-platform aarch64-manylinux_2_28 -c requirements/dev.txt \
			$${layer}requirements.in -o $${layer}requirements.txt || exit 1; done

## demo: the whole workflow on the sample CSV, offline (embedded local AWS + loopback covers)
demo: install
	$(PY) scripts/demo.py --out out/demo

## test: every test (lint, template checks, unit, integration, end-to-end, quick benchmark)
test: install lint
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit

integration: install
	$(PY) -m pytest tests/integration

e2e: install
	$(PY) -m pytest tests/e2e

# The benchmarks in their quick mode, each checked for every figure it prints.
bench-tests: install
	$(PY) -m pytest tests/bench

# checkov in a venv of its own (inside .venv): it pins boto3/botocore/packaging versions that
# would downgrade what moto and the SAM CLI need.
CHECKOV := $(VENV)/checkov
$(CHECKOV)/.installed: | $(STAMP)
	python3 -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV)/bin/python -m pip install --quiet checkov==3.3.30
	touch $@

## lint: ruff, mypy, complexity (xenon, radon MI), cfn-lint with every rule, checkov
lint: install $(CHECKOV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	# Complexity as the Powertools handler cookbook gates it (radon counts and/or, ruff's C901
	# does not): no block above B, every module's and the overall average A; and every deployed
	# module's maintainability index at least 40.
	$(VENV)/bin/xenon --max-absolute B --max-modules A --max-average A functions tools
	$(PY) scripts/maintainability.py functions
	$(VENV)/bin/cfn-lint --include-checks I --include-experimental -- template.yaml
	$(CHECKOV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download
	$(PY) scripts/permissions_table.py --check docs/permissions.md

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

validate: install
	$(VENV)/bin/sam validate --lint

# sam build looks for a python3.13 on PATH for the runtime; the venv's bin has one (or, from a venv
# of another Python, the folder find-python313.sh names).
build: install
	PATH="$$(dirname "$$(scripts/find-python313.sh)"):$$PATH" $(VENV)/bin/sam build

bench: install
	$(PY) benchmarks/render_bench.py

bench-quick: install
	$(PY) benchmarks/render_bench.py --quick

bench-split: install
	$(PY) benchmarks/split_bench.py

bench-export: install
	$(PY) benchmarks/export_bench.py

## bench-run: `collage run` at 1,000 and 10,000 creators against the collage task's own floor
bench-run: install
	$(PY) benchmarks/run_bench.py

## mariadb: the MariaDB server the export-urls tests start on loopback (Debian package)
mariadb:
	scripts/setup-mariadb.sh

cost: install
	$(PY) scripts/cost_model.py

clean:
	rm -rf .aws-sam out .bench .pytest_cache .ruff_cache
