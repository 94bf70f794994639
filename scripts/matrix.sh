#!/usr/bin/env bash
# Run ansible-test sanity and units on each ansible-core release the collection supports (tests/matrix.txt).
#
#   scripts/matrix.sh              every row of tests/matrix.txt, one after the other
#   scripts/matrix.sh LABEL...     only the named rows (e.g. scripts/matrix.sh 2.21)
#   scripts/matrix.sh --list       list the rows
#
# Each row gets a cached virtualenv with its ansible-core pinned exactly ($KUBEHA_CACHE/venv-matrix-LABEL-HASH,
# the hash covering the row and the interpreter); the row whose pin is the suite's own (tests/requirements.txt)
# uses the suite's virtualenv (scripts/bootstrap.sh). Sanity and units run on a copy of the working tree under
# .../ansible_collections/kubeha/gce. The run ends with a table of each row's results and times, and exits
# non-zero if anything failed.
#
# Environment:
#   KUBEHA_CACHE        cache directory for the virtualenvs (see scripts/bootstrap.sh)
#   MATRIX_STAGES       the stages to run on each row (default "sanity units"; "lab" adds the lab's tests)
#   MATRIX_LAB_TESTS    the lab tests the lab stage runs, relative to tests/lab (default
#                       "tests/test_gce_master_network.py tests/test_playbook_replica.py"); needs root
#   KUBEHA_KEEP_TMP=1   keep the temporary work directory for inspection
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# CACHE_DIR and the suite's requirements come from bootstrap.sh, which builds the suite's virtualenv.
# shellcheck source=scripts/bootstrap.sh
source "$REPO_ROOT/scripts/bootstrap.sh"

MATRIX_FILE=$REPO_ROOT/tests/matrix.txt
MATRIX_MARKER=.kubeha-matrix-venv-complete
read -r -a STAGES <<<"${MATRIX_STAGES:-sanity units}"
LAB_TESTS=${MATRIX_LAB_TESTS:-tests/test_gce_master_network.py tests/test_playbook_replica.py}

log() { printf '[matrix] %s\n' "$*" >&2; }
die() { printf '[matrix] ERROR: %s\n' "$*" >&2; exit 1; }

declare -a LABELS=()
declare -A ROW_PYTHON=() ROW_PIN=() RESULT=() DURATION=() CORE_VERSION=()
WORK_DIR=""

# Read tests/matrix.txt into LABELS, ROW_PYTHON and ROW_PIN.
read_matrix() {
    local label python pin extra
    [[ -f $MATRIX_FILE ]] || die "missing $MATRIX_FILE"
    while read -r label python pin extra; do
        [[ -z $label || $label == \#* ]] && continue
        [[ -n $pin && -z $extra ]] || die "$MATRIX_FILE: expected 'LABEL PYTHON REQUIREMENT', got '$label $python $pin $extra'"
        [[ $pin == ansible-core==* ]] || die "$MATRIX_FILE: row $label pins '$pin', not ansible-core==VERSION"
        LABELS+=("$label")
        ROW_PYTHON[$label]=$python
        ROW_PIN[$label]=$pin
    done <"$MATRIX_FILE"
    [[ ${#LABELS[@]} -gt 0 ]] || die "$MATRIX_FILE lists no row"
}

# Print the real path of a Python MAJOR.MINOR interpreter: on the PATH, in /usr/bin, or installed by pyenv.
find_python_version() {
    local version=$1 candidate root
    local -a candidates=("python$version" "/usr/bin/python$version")
    for root in "$(pyenv root 2>/dev/null || true)" "$HOME/.pyenv"; do
        [[ -n $root ]] || continue
        candidates+=("$root"/versions/"$version".*/bin/"python$version")
    done
    for candidate in "${candidates[@]}"; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))" \
                >/dev/null 2>&1; then
            "$candidate" -c 'import os, sys; print(os.path.realpath(sys.executable))'
            return 0
        fi
    done
    return 1
}

# The ansible-core pin of the suite's own virtualenv.
suite_pin() {
    grep -E '^ansible-core==' "$REQUIREMENTS" | head -n 1
}

# Print the path of a cached virtualenv of row LABEL, creating it on first use: NAME says what it is for, and the
# pip arguments that follow are installed into it beside the row's ansible-core. The hash in its name covers the
# row, those arguments, the content of the files they name and the interpreter.
cached_venv() {
    local label=$1 name=$2 python venv key arg
    shift 2
    python=$(find_python_version "${ROW_PYTHON[$label]}") \
        || { log "$label: no Python ${ROW_PYTHON[$label]} interpreter found (on the PATH, in /usr/bin or under pyenv)"; return 1; }
    key=$({
        printf '%s %s %s %s\n' "$label" "${ROW_PYTHON[$label]}" "${ROW_PIN[$label]}" "$*"
        for arg in "$@"; do
            [[ -f $arg ]] && cat "$arg"
        done
        "$python" -c 'import platform, sys; print(platform.python_implementation(), sys.version, sys.executable)'
    } | sha256sum | cut -c1-16)
    venv=$CACHE_DIR/venv-$name-$label-$key
    mkdir -p "$CACHE_DIR"
    (
        exec 9>"$CACHE_DIR/.lock"
        command -v flock >/dev/null 2>&1 && flock 9
        if [[ -f $venv/$MATRIX_MARKER ]] && "$venv/bin/python" -c 'import ansible' >/dev/null 2>&1; then
            log "$label: reusing virtualenv $venv"
        else
            log "$label: creating virtualenv $venv (${ROW_PIN[$label]} $*, python: $python)"
            # Each step checked here: errexit does not hold where the caller tests this function's status.
            rm -rf "$venv" \
                && "$python" -m venv "$venv" \
                && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${ROW_PIN[$label]}" "$@" \
                && "$venv/bin/python" -m pip check \
                && printf 'python: %s\nrequirement: %s %s\n' "$python" "${ROW_PIN[$label]}" "$*" >"$venv/$MATRIX_MARKER" \
                || { log "$label: could not install ${ROW_PIN[$label]} $* into $venv"; exit 1; }
        fi
    ) >&2 || return 1
    printf '%s\n' "$venv"
}

# Whether row LABEL is the suite's own ansible-core and Python, whose virtualenv it then uses.
is_suite_row() {
    [[ ${ROW_PIN[$1]} == "$(suite_pin)" && ${ROW_PYTHON[$1]} == "$PYTHON_MAJOR_MINOR" ]]
}

# Print the path of the virtualenv of row LABEL, creating it on first use.
row_venv() {
    local label=$1
    if is_suite_row "$label"; then
        log "$label: the suite's virtualenv (scripts/bootstrap.sh)"
        KUBEHA_SKIP_APT=1 "$REPO_ROOT/scripts/bootstrap.sh" </dev/null
        return
    fi
    cached_venv "$label" matrix
}

# shellcheck source=scripts/ansible_test_seed.sh
source "$REPO_ROOT/scripts/ansible_test_seed.sh"

# Copy the working tree (tracked and untracked, non-ignored files, so uncommitted work is tested too) to a fresh
# .../ansible_collections/kubeha/gce for row LABEL and print its path: ansible-test resolves real paths, so a
# symlink won't do, and each row gets its own copy so that one's tests/output does not meet the next's.
collection_copy() {
    local label=$1 dest
    dest=$WORK_DIR/$label/ansible_collections/kubeha/gce
    mkdir -p "$dest"
    (
        cd "$REPO_ROOT"
        git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' path; do
                if [[ -e $path || -L $path ]]; then
                    printf '%s\0' "$path"
                fi
            done \
            | rsync -a --from0 --files-from=- ./ "$dest/"
    )
    printf '%s\n' "$dest"
}

stage_sanity() {
    local collection=$1 python=$2
    cd "$collection"
    ansible-test sanity --venv --python "$python"
}

stage_units() {
    local collection=$1 python=$2
    cd "$collection"
    ansible-test units --venv --python "$python" --requirements
}

stage_lab() {
    # The lab's module tests run each module with the interpreter that runs pytest, and ansible-playbook from beside
    # it (tests/lab/tests/conftest.py, test_playbook_replica.py): so pytest runs in a virtualenv of the row's
    # ansible-core with what the lab imports (pytest, the Google client libraries, cryptography, at the unit tests'
    # pins), or in the suite's own on its row.
    local label=$3 venv
    local -a tests
    if is_suite_row "$label"; then
        venv=$(KUBEHA_SKIP_APT=1 "$REPO_ROOT/scripts/bootstrap.sh" </dev/null)
    else
        venv=$(cached_venv "$label" matrix-lab "$(grep -E '^pytest==' "$CONSTRAINTS")" \
            -r "$REPO_ROOT/tests/unit/requirements.txt" -c "$REPO_ROOT/tests/unit/constraints.txt")
    fi
    log "$label: lab tests with ansible-core $("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')"
    export PATH=$venv/bin:$PATH VIRTUAL_ENV=$venv
    cd "$REPO_ROOT/tests/lab"
    read -r -a tests <<<"$LAB_TESTS"
    KUBEHA_NO_SKIPS=1 "$venv/bin/python" -m pytest -p no:cacheprovider -ra -m '' "${tests[@]}"
}

elapsed() {
    awk -v start="$1" -v end="$EPOCHREALTIME" 'BEGIN { printf "%.0f", end - start }'
}

# Run STAGE of row LABEL in a subshell with the row's virtualenv first on the PATH; record its result and time.
run_stage() {
    local label=$1 stage=$2 venv=$3 collection=$4 start rc
    echo
    echo "==================== $label (ansible-core ${CORE_VERSION[$label]}): $stage ===================="
    start=$EPOCHREALTIME
    set +e
    (
        set -e
        # shellcheck disable=SC2030  # the row's PATH is meant for this subshell only
        export PATH=$venv/bin:$PATH VIRTUAL_ENV=$venv
        "stage_$stage" "$collection" "${ROW_PYTHON[$label]}" "$label"
    ) </dev/null
    rc=$?
    set -e
    DURATION[$label:$stage]=$(elapsed "$start")
    if [[ $rc -eq 0 ]]; then
        RESULT[$label:$stage]=ok
    else
        RESULT[$label:$stage]=failed
        log "$label: $stage FAILED (exit $rc) after ${DURATION[$label:$stage]}s"
    fi
}

run_row() {
    local label=$1 venv collection stage start
    start=$EPOCHREALTIME
    if ! venv=$(row_venv "$label"); then
        for stage in "${STAGES[@]}"; do
            RESULT[$label:$stage]="failed (virtualenv)"
            DURATION[$label:$stage]=0
        done
        CORE_VERSION[$label]=${ROW_PIN[$label]#ansible-core==}
        return
    fi
    CORE_VERSION[$label]=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')
    DURATION[$label:venv]=$(elapsed "$start")
    collection=$(collection_copy "$label")
    (
        # shellcheck disable=SC2031  # the row's PATH is meant for this subshell only
        export PATH=$venv/bin:$PATH
        seed_get_pip "${ROW_PYTHON[$label]}"
    )
    for stage in "${STAGES[@]}"; do
        run_stage "$label" "$stage" "$venv" "$collection"
    done
}

summary() {
    local label stage cell failed=0
    echo
    echo "==================== matrix ===================="
    printf '%-7s %-13s %-7s %-9s' "row" "ansible-core" "python" "venv"
    for stage in "${STAGES[@]}"; do
        printf ' %-16s' "$stage"
    done
    printf '\n'
    for label in "${RUN_LABELS[@]}"; do
        printf '%-7s %-13s %-7s %-9s' "$label" "${CORE_VERSION[$label]:-?}" "${ROW_PYTHON[$label]}" \
            "${DURATION[$label:venv]:-?}s"
        for stage in "${STAGES[@]}"; do
            cell="${RESULT[$label:$stage]:-not run} ${DURATION[$label:$stage]:-0}s"
            [[ ${RESULT[$label:$stage]:-} == ok ]] || failed=$((failed + 1))
            printf ' %-16s' "$cell"
        done
        printf '\n'
    done
    printf 'total: %ss; %d failed\n' "$(elapsed "$RUN_START")" "$failed"
    [[ $failed -eq 0 ]]
}

cleanup() {
    if [[ -n $WORK_DIR && -d $WORK_DIR ]]; then
        if [[ ${KUBEHA_KEEP_TMP:-0} == 1 ]]; then
            log "kept $WORK_DIR"
        else
            rm -rf "$WORK_DIR"
        fi
    fi
}

matrix_main() {
    local label stage
    read_matrix
    case ${1:-} in
        -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return 0 ;;
        --list) printf '%s\n' "${LABELS[@]}"; return 0 ;;
        '' | all) RUN_LABELS=("${LABELS[@]}") ;;
        *) RUN_LABELS=("$@") ;;
    esac
    for label in "${RUN_LABELS[@]}"; do
        [[ -n ${ROW_PIN[$label]:-} ]] || die "unknown row '$label' (rows: ${LABELS[*]})"
    done
    for stage in "${STAGES[@]}"; do
        declare -F "stage_$stage" >/dev/null || die "unknown stage '$stage' in MATRIX_STAGES (stages: sanity units lab)"
    done
    RUN_START=$EPOCHREALTIME
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kubeha-matrix.XXXXXX")
    trap cleanup EXIT
    # An interrupt ends the run, not only the stage it arrives in.
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM
    for label in "${RUN_LABELS[@]}"; do
        run_row "$label"
    done
    summary
}

declare -a RUN_LABELS=()
RUN_START=""
matrix_main "$@"
