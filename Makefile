# WaddleBot developer/CI entry points. CI runs `bash .ci/run`, i.e. `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# Overridable from the environment.
WADDLEBOT_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/waddlebot_test
WADDLEBOT_TEST_REPLICA_URL ?= postgresql://postgres@127.0.0.1:5433/waddlebot_test
WADDLEBOT_TEST_REDIS_HOST ?= 127.0.0.1
TEST_ENV := WADDLEBOT_TEST_DATABASE_URL='$(WADDLEBOT_TEST_DATABASE_URL)' \
	WADDLEBOT_TEST_REPLICA_URL='$(WADDLEBOT_TEST_REPLICA_URL)' \
	WADDLEBOT_TEST_REDIS_HOST='$(WADDLEBOT_TEST_REDIS_HOST)'

.PHONY: .venv run services tools lint test browser-deps bench clean

.venv: $(STAMP)

# Reinstall whenever pyproject.toml or constraints.txt is newer than the stamp.
$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test,bench]'
	touch $(STAMP)

run: .venv
	$(VENV)/bin/waddlebot up $(ARGS)

services:
	bash scripts/services.sh

# Offline validators (deck, docker-compose, kubectl check) and the browser for tests/browser.
tools: .venv browser-deps
	bash scripts/deploy-tools.sh

lint: .venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: .venv services tools lint
	$(TEST_ENV) $(VENV)/bin/python -m pytest -q tests

browser-deps:
	@if [ -x /usr/bin/chromium ]; then \
		echo "chromium: /usr/bin/chromium present"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "chromium missing; run 'make browser-deps' as root" >&2; exit 1; \
	else \
		DEBIAN_FRONTEND=noninteractive apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi

# Runs every bench/*.py (except _helper modules) with the venv python; each prints its JSON
# result on stdout (progress goes to stderr).
bench: .venv
	@shopt -s nullglob; files=(); \
	for f in bench/*.py; do case "$${f##*/}" in _*) ;; *) files+=("$$f") ;; esac; done; \
	if [ $${#files[@]} -eq 0 ]; then echo "bench: no bench/*.py files" >&2; exit 0; fi; \
	for f in "$${files[@]}"; do \
		echo "bench: $$f" >&2; \
		$(TEST_ENV) $(VENV)/bin/python "$$f"; \
	done

clean:
	rm -rf $(VENV) .data .service
