# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/matrix.sh, which define log and die.
#
# ansible-test --venv bootstraps pip in each virtualenv with a get-pip script downloaded from a host this machine
# can't reach, and each ansible-core release may pin another pip: seed the cache of this release's pin with the
# stand-in, scripts/ansible_test_get_pip.py, which installs pip with ensurepip and the package index instead.
seed_get_pip() {
    local python_version=$1 pip_version cache_file shim=$REPO_ROOT/scripts/ansible_test_get_pip.py
    pip_version=$(python - "$python_version" <<'EOF'
import re
import sys
import types

try:
    from ansible_test._internal.python_requirements import get_venv_packages
    print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))['pip'])
except Exception:  # fall back to reading the pin from the source
    import ansible_test._internal as internal
    with open(internal.__path__[0] + '/python_requirements.py', encoding='utf-8') as source:
        print(re.search(r"pip='([0-9.]+)'", source.read()).group(1))
EOF
    ) || die "could not determine the pip version ansible-test bootstraps"
    cache_file=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
    if [[ -f $cache_file ]] && ! grep -q 'kubeha-gce get-pip stand-in' "$cache_file"; then
        log "using existing $cache_file"
        return 0
    fi
    mkdir -p "$(dirname "$cache_file")"
    if ! cmp -s "$shim" "$cache_file"; then
        cp "$shim" "$cache_file"
        log "seeded $cache_file (pip $pip_version via ensurepip)"
    fi
}
