# The servers and cluster that the test suite (tests/run.sh) and the demo (scripts/demo.sh) run
# on. Source this file; needs $root (the repository) and $TAILWARDEN_CACHE, $CARGO_TARGET_DIR.
# shellcheck shell=bash

# shellcheck source=tests/lib/host-ip.sh
source "$(dirname "${BASH_SOURCE[0]}")/host-ip.sh"

# bed_up STATE: real Apache Kafka and Apache Cassandra (with password authentication) from
# tests/services, their client listeners on this machine's own address so that worker pods on the
# real node reach them as well as the host's processes; then the control plane with one real node
# (kubelet, containerd, kube-proxy) beside the kwok nodes, running our images built from the debug
# binaries (tests/cluster/node-up.sh). Exports what the tests and the demo read: the servers'
# addresses and credentials, KUBECONFIG, KUBECTL and TAILWARDEN_OPERATOR_BIN.
bed_up() {
  local state=$1
  TAILWARDEN_SERVICES_HOST=$(host_ip)
  [[ -n $TAILWARDEN_SERVICES_HOST ]] || { echo "no non-loopback address for the real node" >&2; return 1; }
  export TAILWARDEN_SERVICES_HOST
  TAILWARDEN_SKIP_BUILD=1 "$root/tests/services/kafka-up.sh" "$state/services"
  TAILWARDEN_SKIP_BUILD=1 TAILWARDEN_CASSANDRA_AUTH=1 "$root/tests/services/cassandra-up.sh" "$state/services"
  # shellcheck disable=SC1091
  source "$state/services/env"
  TAILWARDEN_SKIP_BUILD=1 TAILWARDEN_REAL_NODE=1 "$root/tests/cluster/up.sh" "$state"
  # shellcheck disable=SC1091
  source "$state/env"
  export KUBECONFIG KUBECTL="$TAILWARDEN_CACHE/bin/kubectl"
  export TAILWARDEN_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/tailwarden-operator"
}

# bed_down STATE: stops the servers and the cluster; fails, printing the teardown's log, when one
# of them did not stop cleanly (a real node that leaves changes on the host fails: node-down.sh).
bed_down() {
  local state=$1 ok=0
  "$root/tests/services/down.sh" "$state/services" >"$state/services-down.log" 2>&1 ||
    { cat "$state/services-down.log" >&2; ok=1; }
  "$root/tests/cluster/down.sh" "$state" >"$state/down.log" 2>&1 ||
    { cat "$state/down.log" >&2; ok=1; }
  return "$ok"
}
