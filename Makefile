# Test entry points for the kubeha.gce collection; see scripts/test.sh.
SHELL := /bin/bash

.PHONY: test sanity units lint build bootstrap constraints clean-cache

## test: install what the tests need, then run every stage
test:
	@scripts/test.sh

## sanity | units | lint | build: run one stage
sanity units lint build:
	@scripts/test.sh $@

## bootstrap: install system packages and the cached virtualenv, print its path
bootstrap:
	@scripts/bootstrap.sh

## constraints: re-resolve tests/requirements.txt into tests/constraints.txt
constraints:
	@scripts/update-constraints.sh

## clean-cache: remove the cached virtualenvs
clean-cache:
	rm -rf "$${KUBEHA_CACHE:-/var/cache/kubeha-gce}"/venv-*
