#!/usr/bin/env bash
# Prepare this machine for the kubeha.gce test suite.
#
#   scripts/bootstrap.sh              install system packages, create or reuse the
#                                     cached virtualenv and print its path on stdout
#   scripts/bootstrap.sh --system     install the system packages only
#
# Progress goes to stderr; stdout carries only the virtualenv path, so callers
# can use VENV=$(scripts/bootstrap.sh).
#
# Environment:
#   KUBEHA_CACHE       cache directory (default /var/cache/kubeha-gce as root,
#                      ~/.cache/kubeha-gce otherwise); the
#                      virtualenv lives in $KUBEHA_CACHE/venv-<hash>, where the
#                      hash covers tests/requirements.txt, tests/constraints.txt
#                      and the Python interpreter
#   KUBEHA_PYTHON      Python 3.11 interpreter to use (default: first found)
#   KUBEHA_SKIP_APT=1  never call apt-get (missing packages are only reported)
set -euo pipefail

# Debian packages the tests need. Extend this list when a test needs more.
APT_PACKAGES=(
    ca-certificates
    git
    make
    rsync
    python3
    python3-venv
    shellcheck
    openssh-client
    etcd-server
    etcd-client
    systemd-container
    debootstrap
    nftables
)

# Packages that ship a service which the tests start on their own terms: when
# this script installs one of them on a systemd host, the unit is stopped and
# disabled again (package name => unit name).
declare -A APT_SERVICES_TO_DISABLE=(
    [etcd-server]=etcd.service
)

PYTHON_MAJOR_MINOR=3.11

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS=$REPO_ROOT/tests/requirements.txt
CONSTRAINTS=$REPO_ROOT/tests/constraints.txt
if [[ -n ${KUBEHA_CACHE:-} ]]; then
    CACHE_DIR=$KUBEHA_CACHE
elif [[ $(id -u) -eq 0 ]]; then
    CACHE_DIR=/var/cache/kubeha-gce
else
    CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/kubeha-gce
fi
MARKER_NAME=.kubeha-venv-complete

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

install_apt_packages() {
    local pkg missing=()
    if ! command -v dpkg-query >/dev/null 2>&1; then
        log "not a Debian system: not installing ${APT_PACKAGES[*]}"
        return 0
    fi
    for pkg in "${APT_PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) != installed ]]; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "system packages present"
        return 0
    fi
    if [[ ${KUBEHA_SKIP_APT:-0} == 1 ]]; then
        log "WARNING: missing system packages (KUBEHA_SKIP_APT=1): ${missing[*]}"
        return 0
    fi
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q \
        || die "could not run apt-get update (run as root, or install: ${missing[*]})"
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null \
        || die "apt-get install failed for: ${missing[*]}"

    if [[ -d /run/systemd/system ]]; then
        for pkg in "${missing[@]}"; do
            if [[ -n ${APT_SERVICES_TO_DISABLE[$pkg]:-} ]]; then
                log "disabling ${APT_SERVICES_TO_DISABLE[$pkg]} (installed for its binaries only)"
                as_root systemctl disable --now "${APT_SERVICES_TO_DISABLE[$pkg]}" || true
            fi
        done
    fi
}

is_wanted_python() {
    "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$PYTHON_MAJOR_MINOR'.split('.'))))" \
        >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in ${KUBEHA_PYTHON:-} "python$PYTHON_MAJOR_MINOR" "/usr/bin/python$PYTHON_MAJOR_MINOR" python3 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_wanted_python "$candidate"; then
            # Resolve pyenv-style shims to the real interpreter.
            "$candidate" -c 'import os, sys; print(os.path.realpath(sys.executable))'
            return 0
        fi
    done
    return 1
}

ensure_venv_support() {
    local python=$1
    if "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        return 0
    fi
    if [[ $python == /usr/bin/* ]] && command -v apt-get >/dev/null 2>&1 && [[ ${KUBEHA_SKIP_APT:-0} != 1 ]]; then
        log "$python cannot create virtualenvs; installing python$PYTHON_MAJOR_MINOR-venv"
        if ! as_root apt-get update -q \
            || ! as_root apt-get install -y -q --no-install-recommends "python$PYTHON_MAJOR_MINOR-venv" </dev/null; then
            die "could not install python$PYTHON_MAJOR_MINOR-venv"
        fi
    fi
    "$python" -c 'import venv, ensurepip' >/dev/null 2>&1 \
        || die "$python lacks the venv/ensurepip modules (on Debian: apt-get install python3-venv)"
}

venv_key() {
    local python=$1
    {
        cat "$REQUIREMENTS" "$CONSTRAINTS"
        "$python" -c 'import platform, sys; print(platform.python_implementation(), sys.version, sys.executable)'
    } | sha256sum | cut -c1-16
}

create_venv() {
    local python=$1 venv=$2
    log "creating virtualenv $venv (python: $python)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # Pin pip itself first (its version is listed in the constraints file).
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS" pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$CONSTRAINTS" -r "$REQUIREMENTS"
    "$venv/bin/python" -m pip check
    {
        echo "python: $python"
        echo "created: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$venv/$MARKER_NAME"
    log "virtualenv ready"
}

# etcd of the next minor, for the lab's etcd upgrade: Debian 12 ships etcd 3.4 only, so the etcd-server and
# etcd-client packages of Debian 13 (whose etcd 3.5 needs nothing but glibc) are fetched with apt, through a sources
# list and package lists of their own (the host's apt setup is left as it is), checked by apt against Debian's
# archive key, and their binaries unpacked into $CACHE_DIR/etcd-next/bin, where the lab finds them.
ETCD_NEXT_SUITE=trixie
ETCD_NEXT_MINOR=3.5
fetch_etcd_next() {
    local dir=$CACHE_DIR/etcd-next
    if [[ -x $dir/bin/etcd && -x $dir/bin/etcdctl ]]; then
        log "reusing etcd $("$dir/bin/etcd" --version | sed -n 's/^etcd Version: //p') in $dir"
        return 0
    fi
    # Only the lab's etcd upgrade needs it, and fails saying so when it is missing: nothing else stops here.
    local absent="no etcd $ETCD_NEXT_MINOR in $dir (from Debian $ETCD_NEXT_SUITE through apt-get): the lab's etcd upgrade test will fail"
    if ! command -v apt-get >/dev/null 2>&1 || [[ ${KUBEHA_SKIP_APT:-0} == 1 ]]; then
        log "$absent"
        return 0
    fi
    local work
    work=$(mktemp -d "$CACHE_DIR/.etcd-next.XXXXXX")
    mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/root" "$work/bin"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian %s main\n' \
        "$ETCD_NEXT_SUITE" >"$work/sources.list"
    local apt=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/nonexistent
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives" -o APT::Sandbox::User=root -q)
    local deb version=""
    if as_root apt-get "${apt[@]}" update >/dev/null \
        && (cd "$work/archives" && as_root apt-get "${apt[@]}" download etcd-server etcd-client >/dev/null); then
        for deb in "$work"/archives/etcd-*.deb; do
            dpkg-deb -x "$deb" "$work/root" || true
        done
        if cp "$work/root/usr/bin/etcd" "$work/root/usr/bin/etcdctl" "$work/bin/" 2>/dev/null; then
            version=$("$work/bin/etcd" --version 2>/dev/null | head -1) || version=""
        fi
    fi
    if [[ $version == "etcd Version: $ETCD_NEXT_MINOR."* ]]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        mv "$work/bin" "$dir/bin"
        log "etcd ${version#etcd Version: } from Debian $ETCD_NEXT_SUITE in $dir"
    else
        log "$absent${version:+ (it has ${version#etcd Version: })}"
    fi
    rm -rf "$work"
}

main() {
    # Keep stdout for the result; everything else goes to stderr.
    exec 3>&1 1>&2

    local mode=${1:-venv}
    case $mode in
        venv | --venv) mode=venv ;;
        --system) mode=system ;;
        *) die "usage: $0 [--system]" ;;
    esac

    install_apt_packages
    [[ $mode == system ]] && return 0

    local python
    python=$(find_python) || die "no Python $PYTHON_MAJOR_MINOR interpreter found (set KUBEHA_PYTHON)"
    ensure_venv_support "$python"
    [[ -f $REQUIREMENTS && -f $CONSTRAINTS ]] || die "missing $REQUIREMENTS or $CONSTRAINTS"

    mkdir -p "$CACHE_DIR"
    local venv
    venv=$CACHE_DIR/venv-$(venv_key "$python")

    # Serialise concurrent bootstraps sharing the cache.
    exec 9>"$CACHE_DIR/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi

    if [[ -f $venv/$MARKER_NAME ]] && "$venv/bin/python" -c 'import ansible' >/dev/null 2>&1; then
        log "reusing virtualenv $venv"
    else
        create_venv "$python" "$venv"
    fi
    touch "$venv/$MARKER_NAME"
    fetch_etcd_next
    printf '%s\n' "$venv" >&3
}

# The functions above are also used by scripts/update-constraints.sh.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
