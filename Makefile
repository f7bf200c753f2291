# The two commands a new user needs: `make demo` and `make test` (both set everything up).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY ?= 0

.PHONY: install demo test unit integration e2e lint format validate build bench bench-quick bench-split bench-export bench-run cost mariadb clean

install: $(STAMP)

$(STAMP): pyproject.toml functions/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Two packages: the deployed one (functions/) and the local tools around it (tools/).
	$(PY) -m pip install --quiet -e ./functions -e '.[dev]'
	touch $(STAMP)

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

# checkov in a venv of its own (inside .venv): it pins boto3/botocore/packaging versions that
# would downgrade what moto and the SAM CLI need.
CHECKOV := $(VENV)/checkov
$(CHECKOV)/.installed: | $(STAMP)
	python3 -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV)/bin/python -m pip install --quiet checkov==3.3.30
	touch $@

## lint: ruff, cfn-lint with every rule (informational and experimental too), checkov
lint: install $(CHECKOV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint --include-checks I --include-experimental -- template.yaml
	$(CHECKOV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download
	$(PY) scripts/permissions_table.py --check README.md

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

validate: install
	$(VENV)/bin/sam validate --lint

build: install
	$(VENV)/bin/sam build

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
