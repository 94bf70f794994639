#!/usr/bin/env bash
# The main job on the built-in default, the lab: bring the lab up and run the
# whole master lifecycle against it with the collection's playbooks, with a
# short summary after each step. The lab stays up afterwards to look around.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lab="$root/tests/lab/lab"
cluster=${KUBEHA_DEMO_CLUSTER:-demo}

"$lab" up

summary() {
    printf '\n---- after: %s\n' "$1"
    "$lab" status 2>/dev/null | sed -n 's/^  /  /p'
    printf '\n'
}

playbook() {
    local name=$1
    shift
    printf '\n==== ansible-playbook playbooks/%s.yml %s\n' "$name" "$*"
    "$lab" exec -- ansible-playbook "$root/playbooks/$name.yml" -e "cluster_name=$cluster" "$@"
}

kubeconfig="${KUBEHA_LAB_STATE:-/var/lib/kubeha-lab}/$cluster.kubeconfig"  # the lab's state directory
kubectl() {
    printf '\n==== kubectl %s\n' "$*"
    "$lab" exec -- kubectl --kubeconfig "$kubeconfig" "$@"
}

playbook bootstrap -e zone=europe-west1-b -e "kubeconfig_dest=$kubeconfig"
summary "bootstrap: one replica holds the reserved address"
kubectl -n kube-system get leases

playbook replicate -e zone=europe-west1-c,europe-west1-d
summary "replicate: three replicas behind a load balancer on the reserved address"
kubectl get --raw /readyz

"$lab" crash europe-west1-c "$cluster-master-c"
playbook recover -e zone=europe-west1-c
summary "recover: $cluster-master-c made again on its data disk, same etcd member"

playbook remove -e zone=europe-west1-c,europe-west1-d
summary "remove: two replicas in one run, one at a time; one left, the reserved address back on it, no load balancer"

playbook replicate -e zone=europe-west1-c,europe-west1-d
summary "replicate: three replicas again"

playbook status -e zone=europe-west1-b

cat <<MSG

The lab is still up, with cluster $cluster on three replicas. Look around:
  tests/lab/lab exec -- ansible-playbook playbooks/status.yml -e zone=europe-west1-b -e cluster_name=$cluster
  tests/lab/lab status                   instances, external IPs, forwarding rules
  tests/lab/lab exec -- kubectl --kubeconfig $kubeconfig get namespaces
                                         the real kubectl, as the cluster's administrator
  tests/lab/lab shell                    a shell with the lab's environment (ssh kubeha@IP with \$KUBEHA_LAB_SSH_KEY)
Tear it down:
  tests/lab/lab down
MSG
