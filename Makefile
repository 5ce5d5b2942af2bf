# Shopmesh: every entry point a developer needs. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
BUF := node_modules/.bin/buf
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: help install up down status logs test test-unit gen gen-check lint bench soak lock deploy-check

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## install Python and Node tooling (idempotent, cached)
	@$(PYTHON) tools/install.py

up: install  ## install on first run, start the whole stack, load demo data, print URLs
	@$(PYTHON) -m stack up

down:  ## stop everything `make up` started
	@$(PYTHON) -m stack down

status:  ## health of every part of the stack
	@$(PYTHON) -m stack status

logs:  ## tail one part's log: make logs NAME=kafka
	@$(PYTHON) -m stack logs $(NAME)

GENERATED := gen schemas/vendor mesh/out docker-compose.yml k8s/generated docs/topology.md docs/config.md

gen: install  ## regenerate from the schemas and schemas/topology.yaml: gen/, mesh/out/, compose, k8s/generated, docs
	@$(PYTHON) tools/gen.py

gen-check: gen  ## fail when the committed generated code is stale
	@git add -N $(GENERATED) 2>/dev/null; git diff --exit-code --stat -- $(GENERATED) || \
	  (echo "generated code is stale: run 'make gen' and commit $(GENERATED)" && exit 1)

lint: install  ## ruff, buf lint, buf breaking, generated-code freshness, Avro compatibility
	@$(PYTHON) tools/lint.py

test: install  ## all tests (starts the real servers they need)
	@$(PYTHON) -m pytest -q

test-unit:  ## unit tests only, no servers
	@$(PYTHON) -m pytest -q tests/unit

bench: install  ## benchmarks; results to bench/results/
	@$(PYTHON) -m bench

soak: install  ## long reliability run (bounded)
	@SHOPMESH_SOAK=1 $(PYTHON) -m pytest -q -m soak tests/reliability

lock: install  ## re-pin requirements.lock (transitive runtime deps, used by the images)
	@pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml

deploy-check: install  ## offline validation of k8s/, docker-compose.yml, Dockerfiles
	@$(PYTHON) deploy/validate.py
