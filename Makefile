# Developer entry points. Everything runs from the project's own virtualenvs, built from the
# pinned requirements: .venv (code, tests, linters) and .venv-sam (SAM CLI + cfn-lint).
PYTHON ?= python3
VENV := .venv
SAMVENV := .venv-sam
CHECKOVVENV := .venv-checkov
AWSCLIVENV := .venv-awscli
POETRYVENV := .venv-poetry
PROVIDER := tests/interop/provider
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0

.PHONY: help demo run venv venv-sam venv-checkov venv-awscli venv-poetry interop-deps test lint lint-python lint-cfn lint-checkov lint-workflows \
	build dist bench mutants clean

help:
	@echo "make demo    run the whole product locally and tell its story with pip, twine, uv"
	@echo "make run     start the whole product locally in the foreground (Ctrl-C stops it)"
	@echo "make test    run the test suite"
	@echo "make lint    ruff, mypy, cfn-lint, sam validate --lint, checkov, actionlint"
	@echo "make build   sam build (the Lambda package for arm64)"
	@echo "make dist    the client's wheel and sdist in dist/ (what a release publishes)"
	@echo "make bench   run every benchmark once and print one table (about 3.5 min)"

$(VENV)/.installed: requirements/dev.txt requirements/actionlint.txt functions/requirements.txt client/pyproject.toml pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/actionlint.txt
	touch $@

$(SAMVENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAMVENV)
	$(SAMVENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAMVENV)/bin/python -m pip install --quiet -r requirements/sam.txt
	touch $@

# The devstack (devstack/README.md): the whole product on this machine, no AWS account.
demo: venv
	$(PY) -m devstack demo

run: venv
	$(PY) -m devstack run

$(CHECKOVVENV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOVVENV)
	$(CHECKOVVENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOVVENV)/bin/python -m pip install --quiet -r requirements/checkov.txt
	touch $@

$(AWSCLIVENV)/.installed: requirements/awscli.txt
	$(PYTHON) -m venv $(AWSCLIVENV)
	$(AWSCLIVENV)/bin/python -m pip install --quiet --upgrade pip
	$(AWSCLIVENV)/bin/python -m pip install --quiet -r requirements/awscli.txt
	touch $@

$(POETRYVENV)/.installed: requirements/poetry.txt
	$(PYTHON) -m venv $(POETRYVENV)
	$(POETRYVENV)/bin/python -m pip install --quiet --upgrade pip
	$(POETRYVENV)/bin/python -m pip install --quiet -r requirements/poetry.txt
	touch $@

venv: $(VENV)/.installed
venv-sam: $(SAMVENV)/.installed
venv-checkov: $(CHECKOVVENV)/.installed
venv-awscli: $(AWSCLIVENV)/.installed
venv-poetry: $(POETRYVENV)/.installed

# The OpenID provider of tests/interop (panva's oidc-provider), from the npm registry, exactly as
# package-lock.json pins it; Node.js from Debian's packages if the machine has none.
interop-deps: $(PROVIDER)/node_modules/.installed

$(PROVIDER)/node_modules/.installed: $(PROVIDER)/package.json $(PROVIDER)/package-lock.json
	bash $(PROVIDER)/install-node.sh
	npm ci --prefix $(PROVIDER) --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

test: venv venv-sam venv-awscli venv-poetry interop-deps
	$(PY) -m pytest

lint: lint-python lint-cfn lint-checkov lint-workflows

lint-python: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# cfn-lint and sam validate do not follow nested templates: every infra/*.yaml is listed.
lint-cfn: venv-sam
	$(SAMVENV)/bin/cfn-lint template.yaml infra/*.yaml
	$(SAMVENV)/bin/sam validate --lint

# Every suppression is justified in place (Metadata: checkov: skip: comment).
lint-checkov: venv-checkov
	$(CHECKOVVENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation \
		-f template.yaml $(addprefix -f ,$(wildcard infra/*.yaml))

# The GitHub Actions workflows (actionlint from .venv; it runs shellcheck on run: scripts only
# where shellcheck is on PATH).
lint-workflows: venv
	$(VENV)/bin/actionlint $(wildcard .github/workflows/*.yml)

build: venv-sam
	$(SAMVENV)/bin/sam build

# The client's wheel and sdist, as a release publishes them: the pinned build and hatchling from
# .venv, no build isolation (so no download); the version is cabroker.__version__.
dist: venv
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist client

# One table, each figure from one run of its script (bench/report.py); a failed benchmark is a
# "failed: <reason>" row and a non-zero exit. The AWS CLI is what `cabroker env` is compared to.
bench: venv venv-awscli
	@$(PY) bench/report.py

clean:
	rm -rf .aws-sam $(PROVIDER)/node_modules

mutants: venv
	$(PY) tests/mutants.py
