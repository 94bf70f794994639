# Test entry points for the kubeha.gce collection; see scripts/test.sh.
SHELL := /bin/bash

.PHONY: demo test bench crash-matrix matrix sanity units etcd lint build lab lifecycle molecule bootstrap constraints clean-cache

## demo: bring the lab up and run the collection against it (the main job on the lab)
demo:
	@scripts/demo.sh


## test: install what the tests need, then run every stage
test:
	@scripts/test.sh

## bench: measure what each lifecycle step costs in the lab (wall time, calls, availability), what an
## unfriendly Compute API costs, and what the rolling playbooks cost per replica (BENCH="lifecycle", "api_faults"
## or "rolling" runs one); not part of test
bench:
	@scripts/bench.sh $(BENCH)

## crash-matrix: every run killed at every step and finished by the next (make test runs a sample); not part of test
crash-matrix:
	@scripts/test.sh crash_matrix

## matrix: ansible-test sanity and units on each ansible-core release in tests/matrix.txt (2.17, 2.19, 2.21), each in a
## cached virtualenv of its own, and a table of the results (MATRIX="2.21" runs one row); not part of test
matrix:
	@scripts/matrix.sh $(MATRIX)

## sanity | units | etcd | lint | build | lab | lifecycle | molecule: run one stage
sanity units etcd lint build lab lifecycle molecule:
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
