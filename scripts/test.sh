#!/usr/bin/env bash
# Run the kubeha.gce test stages.
#
#   scripts/test.sh              every stage in STAGES order, stopping at the first failure; the stages in
#                                BESIDE start first, one after the other, beside the others (their output
#                                follows at the end)
#   scripts/test.sh STAGE...     only the named stages (e.g. scripts/test.sh sanity build)
#   scripts/test.sh --list       list the stages
#
# Environment:
#   KUBEHA_CACHE        cache directory for the virtualenv (see scripts/bootstrap.sh)
#   KUBEHA_KEEP_TMP=1   keep the temporary work directory for inspection
#
# Adding a stage: write a stage_<name> function below and add <name> to STAGES. crash_matrix (make crash-matrix) is
# a stage that runs only when named.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COLLECTION_NAMESPACE=kubeha
COLLECTION_NAME=gce
PYTHON_VERSION=3.11

# Stages run by default, in order.
STAGES=(
    sanity
    units
    etcd
    lint
    build
    lab
    molecule
    lifecycle
)

# Stages that run beside the others when more than one stage runs, one after the other in this order: the
# lifecycle test and the lab stage each keep about one of the two cores busy, so the stages that are neither
# follow the lifecycle test, which is the shorter of the two.
BESIDE=(
    lifecycle
    etcd
    build
)

log() { printf '[test] %s\n' "$*" >&2; }
die() { printf '[test] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Copy the working tree (tracked and untracked, non-ignored files, so
# uncommitted work is tested too) to DEST.
copy_worktree() {
    local dest=$1
    mkdir -p "$dest"
    if git -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (
            cd "$REPO_ROOT"
            git ls-files -z --cached --others --exclude-standard \
                | while IFS= read -r -d '' path; do
                    # Skip files deleted from the working tree but still in the index.
                    if [[ -e $path || -L $path ]]; then
                        printf '%s\0' "$path"
                    fi
                done \
                | rsync -a --from0 --files-from=- ./ "$dest/"
        )
    else
        rsync -a --exclude=/.git --exclude=/.venv --exclude=/tests/output \
            --exclude=__pycache__ "$REPO_ROOT/" "$dest/"
    fi
}

# Print the path of a copy of the collection under
# <tmp>/ansible_collections/<namespace>/<name>, creating it on first use.
# ansible-test resolves real paths, so a symlink into the checkout won't do.
collection_copy() {
    local dest=$WORK_DIR/collections/ansible_collections/$COLLECTION_NAMESPACE/$COLLECTION_NAME
    if [[ ! -d $dest ]]; then
        log "copying the working tree to $dest"
        copy_worktree "$dest"
    fi
    printf '%s\n' "$dest"
}

# ansible-test --venv bootstraps pip with a get-pip script this machine cannot download: seed_get_pip.
# shellcheck source=scripts/ansible_test_seed.sh
source "$REPO_ROOT/scripts/ansible_test_seed.sh"

# Copy stdin to stdout, each line prefixed with the seconds since the start.
elapsed_lines() {
    local start=$SECONDS line
    while IFS= read -r line || [[ -n $line ]]; do
        printf '[%4ds] %s\n' $((SECONDS - start)) "$line"
    done
}

# Modules shipped by the collection, derived from plugins/modules/*.py.
list_modules() {
    local file name
    for file in "$REPO_ROOT"/plugins/modules/*.py; do
        [[ -e $file ]] || continue
        name=$(basename "$file" .py)
        [[ $name == __init__ ]] && continue
        printf '%s\n' "$name"
    done
}

# ---------------------------------------------------------------------------
# Stages: each runs in its own subshell with errexit on; a non-zero exit fails it.
# ---------------------------------------------------------------------------

stage_sanity() {
    local collection
    collection=$(collection_copy)
    seed_get_pip "$PYTHON_VERSION"
    cd "$collection"
    ansible-test sanity --venv --python "$PYTHON_VERSION"
}

stage_units() {
    local collection
    collection=$(collection_copy)
    seed_get_pip "$PYTHON_VERSION"
    cd "$collection"
    ansible-test units --venv --python "$PYTHON_VERSION" --requirements
}

stage_etcd() {
    # etcd_member and etcd_member_info against real etcd 3.4 clusters on
    # 127.0.0.1 with peer and client TLS; every etcd started is killed at the end.
    command -v etcd >/dev/null || die "etcd is not installed (Debian package etcd-server)"
    cd "$REPO_ROOT/tests/etcd"
    python -m pytest -ra --durations=25
}

stage_lint() {
    local collection
    # Let playbooks and roles resolve kubeha.gce.* without installing anything.
    collection=$(collection_copy)
    export ANSIBLE_COLLECTIONS_PATH=${collection%/ansible_collections/*}
    cd "$REPO_ROOT"
    ansible-lint --offline
    # The options that several roles share are written once (roles/kubeha/meta/shared_options.yml).
    python scripts/role_specs.py --check
    python scripts/awx_surveys.py --check
    antsibull-changelog lint
    antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
}

stage_build() {
    local src=$WORK_DIR/build/src out=$WORK_DIR/build/out installed=$WORK_DIR/build/installed
    local tarball module listed
    local -a modules tarballs
    mapfile -t modules < <(list_modules)
    [[ ${#modules[@]} -gt 0 ]] || die "no modules found in plugins/modules"

    copy_worktree "$src"
    mkdir -p "$out" "$installed"
    ansible-galaxy collection build --output-path "$out" "$src"
    tarballs=("$out"/"$COLLECTION_NAMESPACE-$COLLECTION_NAME"-*.tar.gz)
    [[ ${#tarballs[@]} -eq 1 && -f ${tarballs[0]} ]] || die "expected one collection tarball in $out"
    tarball=${tarballs[0]}
    # The release holds only the collection itself (galaxy.yml's build_ignore): no tests, none of the suite's
    # tooling, and all of the product, the addon manager that the control_plane role installs included.
    local contents shipped dir file
    contents=$(tar -tzf "$tarball")
    # Nor the execution environment's definition and build context, which build an image from a checkout.
    shipped=$(grep -E '^(tests|extensions/molecule|scripts|\.ci|context)(/|$)|^Makefile$|^extensions/awx/execution-environment\.yml$' \
        <<<"$contents" || true)
    [[ -z $shipped ]] || die "the tarball holds tests or the suite's tooling: $(head -n 5 <<<"$shipped" | tr '\n' ' ')"
    for dir in roles plugins playbooks meta docs changelogs; do
        grep -q "^$dir/" <<<"$contents" || die "the tarball holds nothing under $dir/"
    done
    # meta/execution-environment.yml and the files it names are how ansible-builder finds what the collection needs.
    for file in README.md meta/runtime.yml meta/execution-environment.yml requirements.txt bindep.txt changelogs/changelog.yaml \
        roles/control_plane/files/kube_addon_manager.py; do
        grep -qxF "$file" <<<"$contents" || die "the tarball lacks $file"
    done
    ansible-galaxy collection install --offline -p "$installed" "$tarball"

    # The execution environment's build context, made as a user makes it: the tarball at the checkout's root, then
    # ansible-builder create (no container engine needed). The collection's own requirements are read only while the
    # image is built, inside it: check_ee.py runs that same introspection on the collection installed from this
    # tarball and checks that the image would get every requirement, pinned as tests/constraints.txt pins it.
    cp "$tarball" "$src/"
    ansible-builder create -f "$src/extensions/awx/execution-environment.yml" --context "$WORK_DIR/build/ee" --output-filename Containerfile
    python "$REPO_ROOT/scripts/check_ee.py" --context "$WORK_DIR/build/ee" --collections "$installed" --tarball "$tarball"

    # Only the installed tarball may satisfy the lookups below.
    export ANSIBLE_COLLECTIONS_PATH=$installed ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
    cd "$WORK_DIR"
    listed=$(ansible-doc -t module -l "$COLLECTION_NAMESPACE.$COLLECTION_NAME" --json)
    for module in "${modules[@]}"; do
        local fqcn=$COLLECTION_NAMESPACE.$COLLECTION_NAME.$module
        log "ansible-doc $fqcn"
        ansible-doc -t module "$fqcn" >"$WORK_DIR/build/ansible-doc-$module.txt"
        ansible-doc -t module --json "$fqcn" | python -c '
import json, sys
fqcn = sys.argv[1]
doc = json.load(sys.stdin).get(fqcn, {}).get("doc") or {}
if not doc.get("short_description"):
    sys.exit("ansible-doc returned no documentation for %s" % fqcn)
' "$fqcn"
        python -c '
import json, sys
if sys.argv[2] not in json.loads(sys.argv[1]):
    sys.exit("ansible-doc -l does not list %s" % sys.argv[2])
' "$listed" "$fqcn"
    done
    local doc filters=()
    for doc in "$REPO_ROOT"/plugins/filter/*.yml; do
        [[ -e $doc ]] || continue
        filters+=("$(basename "$doc" .yml)")
        log "ansible-doc -t filter $COLLECTION_NAMESPACE.$COLLECTION_NAME.${filters[-1]}"
        ansible-doc -t filter "$COLLECTION_NAMESPACE.$COLLECTION_NAME.${filters[-1]}" >/dev/null
    done
    log "built $(basename "$tarball"); documented modules: ${modules[*]}; filters: ${filters[*]:-none}"
}

stage_lab() {
    # The lab's own tests: the Compute API simulator, the lab command line, and
    # the collection's modules run by ansible-playbook against the lab; the lifecycle is a stage of its own.
    # Run as root, every test runs: a skipped one (the real-machine tier without root, say) fails the stage.
    cd "$REPO_ROOT/tests/lab"
    KUBEHA_NO_SKIPS=1 python -m pytest -p no:cacheprovider -ra --durations=25 --ignore=tests/test_lifecycle.py \
        --ignore=tests/test_awx_job.py -m "not crash_matrix" tests
}

stage_crash_matrix() {
    # Not part of make test: the whole kill-at-every-step matrix, of which the lab stage runs a sample.
    cd "$REPO_ROOT/tests/lab"
    KUBEHA_NO_SKIPS=1 python -m pytest -p no:cacheprovider -ra --durations=25 -m crash_matrix tests
}

stage_lifecycle() {
    # The four lifecycle roles end to end on a lab of their own (tests/lab/tests/test_lifecycle.py), then the same
    # playbooks as AWX jobs run by ansible-runner from the built collection (tests/lab/tests/test_awx_job.py).
    cd "$REPO_ROOT/tests/lab"
    KUBEHA_NO_SKIPS=1 python -m pytest -p no:cacheprovider -ra --durations=10 tests/test_lifecycle.py tests/test_awx_job.py
}

stage_molecule() {
    # The molecule scenario of each public role (extensions/molecule) on one lab of their own, which
    # the default scenario's create and destroy steps bring up and down; `lab enter` puts molecule
    # in the lab's network namespace. The lab is taken down again even if molecule could not.
    local state rc=0
    state=$(mktemp -d /var/tmp/kubeha-molecule.XXXXXX)
    export KUBEHA_LAB_STATE=$state KUBEHA_LAB_NS=kubeha-mol$$
    export MOLECULE_EPHEMERAL_DIRECTORY=$state/molecule NO_COLOR=1 ANSIBLE_NOCOLOR=1
    cd "$REPO_ROOT"
    # Each line carries the seconds since the start, which time each scenario's steps.
    # The scenarios in the order of a cluster's life, so each starts where the one before left the cluster and
    # its prepare step has nothing to build: bootstrap (1 replica), replicate (3), recover (3), remove (1).
    tests/lab/lab enter -- molecule test -s bootstrap -s replicate -s recover -s remove 2>&1 | elapsed_lines || rc=$?
    tests/lab/lab down >/dev/null || rc=$((rc ? rc : 1))
    rm -rf "$state"
    return "$rc"
}

# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

declare -A RESULT=() DURATION=() BESIDE_PID=()
RUN_STAGES=()
BOOTSTRAP_TIME=""
BOOTSTRAP_RESULT=ok
RUN_START=""
WORK_DIR=""

# ansible-test re-executes itself with a clean environment (no TMPDIR), and an
# interrupted run leaves its /tmp/ansible-test-* directories behind: remember
# which existed before, and remove the new ones if the run is interrupted.
declare -A PRE_EXISTING_TMP=()
INTERRUPTED=0

snapshot_tmp() {
    local path
    for path in /tmp/ansible-test-*; do
        if [[ -e $path ]]; then
            PRE_EXISTING_TMP[$path]=1
        fi
    done
}

sweep_tmp() {
    local path
    for path in /tmp/ansible-test-*; do
        if [[ -e $path && -O $path && -z ${PRE_EXISTING_TMP[$path]:-} ]]; then
            rm -rf "$path"
        fi
    done
}

on_signal() {
    local name
    INTERRUPTED=1
    log "interrupted"
    [[ -z ${WORK_DIR:-} ]] || : >"$WORK_DIR/interrupted" 2>/dev/null || true
    # A stage running beside the others has a process group of its own: interrupt it as a terminal would,
    # so that pytest runs its teardown (lab down) before it ends.
    # One that ignores SIGINT (started by a shell that ignored it) is terminated after two minutes.
    local deadline=$((SECONDS + 120))
    for name in "${!BESIDE_PID[@]}"; do
        kill -INT -- "-${BESIDE_PID[$name]}" 2>/dev/null || true
    done
    for name in "${!BESIDE_PID[@]}"; do
        while kill -0 "${BESIDE_PID[$name]}" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 1
        done
        kill -TERM -- "-${BESIDE_PID[$name]}" 2>/dev/null || true
        wait "${BESIDE_PID[$name]}" 2>/dev/null || true
    done
    for name in "${RUN_STAGES[@]}"; do
        if is_beside "$name" && [[ -f $WORK_DIR/stage-$name.start ]]; then
            echo "==================== stage: $name (beside the others, interrupted; the end of its output) ===================="
            tail -n 40 "$WORK_DIR/stage-$name.log" 2>/dev/null || true
        fi
    done
    exit "$1"
}

cleanup() {
    local name
    # Stages beside the others that are still running when the script ends early: they end with it.
    for name in "${!BESIDE_PID[@]}"; do
        kill -TERM -- "-${BESIDE_PID[$name]}" 2>/dev/null || true
    done
    if [[ $INTERRUPTED == 1 ]]; then
        sweep_tmp
    fi
    if [[ -n $WORK_DIR && -d $WORK_DIR ]]; then
        if [[ ${KUBEHA_KEEP_TMP:-0} == 1 ]]; then
            log "kept $WORK_DIR"
        else
            rm -rf "$WORK_DIR"
        fi
    fi
}

elapsed() {  # elapsed START -> seconds with one decimal
    awk -v start="$1" -v end="$EPOCHREALTIME" 'BEGIN { printf "%.1f", end - start }'
}

summary() {
    local name passed=0 failed=0 skipped=0
    echo
    echo "==================== summary ===================="
    if [[ -n $BOOTSTRAP_TIME ]]; then
        printf '  %-10s %-8s %8ss\n' bootstrap "$BOOTSTRAP_RESULT" "$BOOTSTRAP_TIME"
    fi
    # A failed bootstrap counts as a failed stage.
    [[ $BOOTSTRAP_RESULT == failed ]] && failed=1
    for name in "${RUN_STAGES[@]}"; do
        case ${RESULT[$name]:-skipped} in
            passed) passed=$((passed + 1)) ;;
            failed) failed=$((failed + 1)) ;;
            *) skipped=$((skipped + 1)) ;;
        esac
        printf '  %-10s %-8s %8s\n' "$name" "${RESULT[$name]:-skipped}" \
            "${DURATION[$name]:+${DURATION[$name]}s}"
    done
    echo "================================================="
    if [[ $skipped -gt 0 ]]; then
        echo "stages: $passed passed, $failed failed, $skipped skipped"
    else
        echo "stages: $passed passed, $failed failed"
    fi
}

# Record stage NAME's result from its exit code RC (its DURATION is set).
record_result() {
    local name=$1 rc=$2
    if [[ $rc -eq 0 ]]; then
        RESULT[$name]=passed
        log "stage $name passed in ${DURATION[$name]}s"
    else
        RESULT[$name]=failed
        log "stage $name FAILED (exit $rc) after ${DURATION[$name]}s"
    fi
}

run_stage() {
    local name=$1 start rc
    echo
    echo "==================== stage: $name ===================="
    start=$EPOCHREALTIME
    set +e
    (set -e; "stage_$name") </dev/null
    rc=$?
    set -e
    DURATION[$name]=$(elapsed "$start")
    record_result "$name" "$rc"
}

# Start the stages NAME... one after the other in the background, in a process group of their own, each one's
# output to a log in WORK_DIR; finish_beside waits for them and prints those logs. Each runs whether the one before
# passed or not; an interrupt ends them all.
start_beside() {
    echo
    echo "==================== stages beside the others, in turn: $* (their output follows) ===================="
    set -m
    (
        set +e
        for name in "$@"; do
            # The run was interrupted (on_signal), or its script is gone: no further stage starts.
            if [[ -e $WORK_DIR/interrupted ]] || ! kill -0 "$$" 2>/dev/null; then
                break
            fi
            printf '%s\n' "$EPOCHREALTIME" >"$WORK_DIR/stage-$name.start"
            (set -e; "stage_$name") </dev/null >"$WORK_DIR/stage-$name.log" 2>&1
            rc=$?
            printf '%s %s\n' "$EPOCHREALTIME" "$rc" >"$WORK_DIR/stage-$name.end"
        done
    ) </dev/null &
    BESIDE_PID[beside]=$!
    set +m
}

# The stage that ran beside the others whose log comes next, and its result.
finish_beside() {
    local name=$1 start end rc
    if [[ -n ${BESIDE_PID[beside]:-} ]]; then
        set +e
        wait "${BESIDE_PID[beside]}"
        set -e
        unset "BESIDE_PID[beside]"
    fi
    echo
    echo "==================== stage: $name (ran beside the other stages) ===================="
    if [[ ! -f $WORK_DIR/stage-$name.start ]]; then
        RESULT[$name]=failed
        log "stage $name did not start (the run was interrupted)"
        return
    fi
    cat "$WORK_DIR/stage-$name.log"
    start=$(<"$WORK_DIR/stage-$name.start")
    if [[ -f $WORK_DIR/stage-$name.end ]]; then
        read -r end rc <"$WORK_DIR/stage-$name.end"
    else
        end=$EPOCHREALTIME rc=1
    fi
    DURATION[$name]=$(awk -v start="$start" -v end="$end" 'BEGIN { printf "%.1f", end - start }')
    record_result "$name" "$rc"
}

# Whether stage NAME runs beside the others in this run.
is_beside() {
    local name=$1 beside
    [[ ${#RUN_STAGES[@]} -gt 1 ]] || return 1
    for beside in "${BESIDE[@]}"; do
        [[ $beside == "$name" ]] && return 0
    done
    return 1
}

main() {
    local name start venv
    case ${1:-} in
        -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return 0 ;;
        --list) printf '%s\n' "${STAGES[@]}"; return 0 ;;
        '' | all) RUN_STAGES=("${STAGES[@]}") ;;
        *) RUN_STAGES=("$@") ;;
    esac
    for name in "${RUN_STAGES[@]}"; do
        declare -F "stage_$name" >/dev/null || die "unknown stage '$name' (stages: ${STAGES[*]})"
    done

    snapshot_tmp
    trap cleanup EXIT
    trap 'on_signal 129' HUP
    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM

    start=$EPOCHREALTIME
    RUN_START=$start
    if ! venv=$("$REPO_ROOT/scripts/bootstrap.sh" </dev/null); then
        BOOTSTRAP_TIME=$(elapsed "$start")
        BOOTSTRAP_RESULT=failed
        log "bootstrap FAILED"
        summary
        return 1
    fi
    BOOTSTRAP_TIME=$(elapsed "$start")
    export PATH=$venv/bin:$PATH VIRTUAL_ENV=$venv
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kubeha-test.XXXXXX")
    # Tools' own temporary files go under WORK_DIR too, so an interrupted run
    # leaves nothing behind.
    mkdir "$WORK_DIR/tmp"
    export TMPDIR=$WORK_DIR/tmp
    log "virtualenv: $venv (ansible-core $(python -c 'from ansible.release import __version__; print(__version__)'))"
    log "work directory: $WORK_DIR"

    # run_stage must not be called from a conditional context (if, ||, &&):
    # bash would then ignore errexit inside the stage.
    local rc=0
    # In the order of BESIDE.
    local beside=() wanted
    for wanted in "${BESIDE[@]}"; do
        for name in "${RUN_STAGES[@]}"; do
            if [[ $name == "$wanted" ]] && is_beside "$name"; then
                beside+=("$name")
                break
            fi
        done
    done
    if [[ ${#beside[@]} -gt 0 ]]; then
        start_beside "${beside[@]}"
    fi
    for name in "${RUN_STAGES[@]}"; do
        is_beside "$name" && continue
        run_stage "$name"
        if [[ ${RESULT[$name]:-} != passed ]]; then
            rc=1
            break
        fi
    done
    for name in "${RUN_STAGES[@]}"; do
        if is_beside "$name"; then
            finish_beside "$name"
            [[ ${RESULT[$name]:-} == passed ]] || rc=1
        fi
    done
    summary
    printf 'total: %ss\n' "$(elapsed "$RUN_START")"
    return "$rc"
}

main "$@"
