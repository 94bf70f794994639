#!/usr/bin/env bash
# make bench: bring up a lab and measure what each step of a cluster's life costs (tests/lab/tests/bench_*.py):
#   lifecycle   every lifecycle step's wall time, calls and availability (bench_lifecycle.py, about 20 minutes)
#   api_faults  one cluster's life with the Compute API answering, then with 30 % of calls failing and one failed
#               operation per step (bench_api_faults.py, about 20 minutes)
#   rolling     reconfigure, rotate_certs, upgrade of Kubernetes and of etcd on three replicas: per step the failed
#               etcd writes and API polls, per replica out of the load balancer -> ready -> back (bench_rolling.py,
#               about 17 minutes)
# Usage: scripts/bench.sh [lifecycle|api_faults|rolling ...] (make bench BENCH="rolling"); all of them by default.
# Each prints its table, and writes it as Markdown and its figures as JSON to
# $KUBEHA_REPORT_DIR/bench-[api-faults-|rolling-]TIME-COMMIT.{md,json} (default /var/tmp/kubeha-gce/reports), so two commits
# can be compared. Needs root, as the lab does. Not part of make test.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $EUID -ne 0 ]]; then
    echo "make bench needs root: the lab boots machines in network namespaces" >&2
    exit 1
fi
benches=("$@")
[[ $# -gt 0 ]] || benches=(lifecycle api_faults rolling)
files=()
for bench in "${benches[@]}"; do
    if [[ ! -f $root/tests/lab/tests/bench_$bench.py ]]; then
        echo "no benchmark named $bench: lifecycle, api_faults or rolling" >&2
        exit 2
    fi
    files+=("tests/bench_$bench.py")
done
venv=$("$root/scripts/bootstrap.sh" </dev/null)
export PATH=$venv/bin:$PATH VIRTUAL_ENV=$venv
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$root" status --porcelain 2>/dev/null) ]]; then
    commit+=-modified
fi
KUBEHA_BENCH_STAMP=$(date -u +%Y%m%dT%H%M%S)-$commit
export KUBEHA_BENCH_STAMP
# The lab's state (machines' disks, etcd's data) lives in a directory of this run, removed at the end.
work=$(mktemp -d /var/tmp/kubeha-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$root/tests/lab"
# A skipped benchmark is a failed one.
KUBEHA_NO_SKIPS=1 python -m pytest -p no:cacheprovider -q --durations=0 --basetemp="$work/pytest" "${files[@]}"
