#!/usr/bin/env bash
# The whole test suite, from a fresh machine: builds the local Kubernetes control plane (cached),
# builds the workspace, starts the cluster with its real node, runs every test including the cluster tests, and stops
# the cluster again, also when a test fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TAILWARDEN_CACHE=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TAILWARDEN_CACHE/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cd "$root"

"$root/tests/cluster/build.sh"
"$root/tests/prometheus/install.sh"
"$root/tests/images/install.sh"
"$root/tests/helm/build.sh"
"$root/tests/status-page/install.sh"
"$root/tests/services/build.sh"
"$root/tests/rust-deps.sh"
cargo build --workspace --all-targets

# A short bounded fuzz run of the data plane's update parser (longer runs: docs/benchmarks.md).
# Its sanitizer flags get their own target directory, so the main build cache stays valid.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
CARGO_TARGET_DIR="$TAILWARDEN_CACHE/target-fuzz" "$root/dataplane/fuzz/run.sh" "${TAILWARDEN_FUZZ_SECONDS:-30}"

state=$(mktemp -d "${TMPDIR:-/tmp}/tailwarden-test.XXXXXX")
stop() {
  local rc=$?
  "$root/tests/services/down.sh" "$state/services" >"$state/services-down.log" 2>&1 ||
    { cat "$state/services-down.log" >&2; [[ $rc -ne 0 ]] || rc=1; }
  # A teardown that leaves the real node's changes on the host fails the run (node-down.sh).
  if ! "$root/tests/cluster/down.sh" "$state" >"$state/down.log" 2>&1; then
    cat "$state/down.log" >&2
    [[ $rc -ne 0 ]] || rc=1
  fi
  if [[ $rc -ne 0 ]]; then
    echo "test run failed (exit $rc); cluster logs kept in $state/logs" >&2
  else
    rm -rf "$state"
  fi
  exit "$rc"
}
trap stop EXIT
# Real Apache Kafka and Apache Cassandra (with password authentication) for the distributed data
# plane's tests: tests/services/. Their client listeners are on this machine's own address, so
# that worker pods on the real node reach them as well as the host's test processes. They export
# TAILWARDEN_KAFKA_BOOTSTRAP, TAILWARDEN_CASSANDRA and its credentials through $state/services/env.
# shellcheck source=tests/lib/host-ip.sh
source "$root/tests/lib/host-ip.sh"
TAILWARDEN_SERVICES_HOST=$(host_ip)
[[ -n $TAILWARDEN_SERVICES_HOST ]] || { echo "no non-loopback address for the real node" >&2; exit 1; }
export TAILWARDEN_SERVICES_HOST
TAILWARDEN_SKIP_BUILD=1 "$root/tests/services/kafka-up.sh" "$state/services"
TAILWARDEN_SKIP_BUILD=1 TAILWARDEN_CASSANDRA_AUTH=1 "$root/tests/services/cassandra-up.sh" "$state/services"
# shellcheck disable=SC1091
source "$state/services/env"
# One real node (kubelet, containerd, kube-proxy) beside the kwok nodes, running our images built
# from the debug binaries above: tests/cluster/node-up.sh.
TAILWARDEN_SKIP_BUILD=1 TAILWARDEN_REAL_NODE=1 "$root/tests/cluster/up.sh" "$state"
# shellcheck disable=SC1091
source "$state/env"
export KUBECONFIG KUBECTL="$TAILWARDEN_CACHE/bin/kubectl"
export TAILWARDEN_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/tailwarden-operator"

cargo test --workspace --no-fail-fast -- --include-ignored "$@"
