#!/usr/bin/env bash
# Regenerate tests/constraints.txt: install tests/requirements.txt into a
# scratch virtualenv without constraints (newest releases that fit) and freeze
# it. Review the diff, then run `make test`.
set -euo pipefail

# shellcheck source=scripts/bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

python=$(find_python) || die "no Python $PYTHON_MAJOR_MINOR interpreter found (set KUBEHA_PYTHON)"
ensure_venv_support "$python"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/kubeha-constraints.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

log "resolving $REQUIREMENTS with $python"
"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
"$scratch/venv/bin/python" -m pip check >&2

{
    echo "# Exact versions for the test virtualenv (pip freeze of tests/requirements.txt"
    echo "# on Python $("$python" -c 'import platform; print(platform.python_version())')). Regenerate with: make constraints"
    "$scratch/venv/bin/python" -m pip freeze --all --exclude setuptools --exclude wheel | LC_ALL=C sort -f -t= -k1,1
} >"$CONSTRAINTS.new"
mv "$CONSTRAINTS.new" "$CONSTRAINTS"
log "wrote $CONSTRAINTS"
