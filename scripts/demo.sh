#!/usr/bin/env bash
# The local end-to-end demo, on real parts: a Kubernetes control plane on loopback with one real
# node (kubelet, containerd, kube-proxy), real Apache Kafka and Apache Cassandra, a real
# Prometheus, and the operator. A distributed RetailPipeline runs its workers as pods on the real
# node under load, and a short story plays out while a live view prints the pipeline's state and
# each decision with its reason:
#   1. a read spike: the P99 crosses its target, serve scales up, the new pods bring it back;
#   2. the spike ends: serve scales down after its stabilization window;
#   3. a bad rollout (5 % of reads fail) burns the budget and rollouts freeze; the fix is held
#      back until an accountable override lets it through;
#   4. recovery, and the decision history.
# The story itself: tests/src/bin/tailwarden-demo.rs, on the bed of tests/src/closed_loop.rs.
#
# --keep leaves everything running after the story, with the live view, until Ctrl-C. Ctrl-C at
# any time tears everything down. Needs root (the real node), like the test suite.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TAILWARDEN_CACHE=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TAILWARDEN_CACHE/target}
demo_args=()
[[ ${1:-} == --keep ]] && demo_args+=(--keep)
cd "$root"

say() { printf '\n==> %s\n' "$*"; }

say "Building the control plane, the node's runtime, Prometheus, Kafka and Cassandra (cached under $TAILWARDEN_CACHE) and the workspace"
"$root/tests/cluster/build.sh"
"$root/tests/prometheus/install.sh"
"$root/tests/images/install.sh"
"$root/tests/services/build.sh"
cargo build --workspace --bins

state=$(mktemp -d "${TMPDIR:-/tmp}/tailwarden-demo.XXXXXX")
# shellcheck source=tests/lib/bed.sh
source "$root/tests/lib/bed.sh"
stop() {
  local rc=$?
  bed_down "$state" || true
  if [[ $rc -eq 0 ]]; then rm -rf "$state"; else echo "demo stopped (exit $rc); logs kept in $state" >&2; fi
  exit "$rc"
}
trap stop EXIT

say "Starting Kafka and Cassandra on this machine's address, the control plane and the real node"
bed_up "$state"
kubectl=$KUBECTL

say "Installing the RetailPipeline CRD; a bad spec is rejected by the API server, naming the field"
"$kubectl" apply --server-side -f crds/retailpipelines.tailwarden.io.yaml
"$kubectl" wait --for=condition=Established crd/retailpipelines.tailwarden.io --timeout=60s
if "$kubectl" apply -f - <<'BAD' 2>&1; then exit 1; fi
apiVersion: tailwarden.io/v1alpha1
kind: RetailPipeline
metadata: {name: broken}
spec:
  dataplane: {image: docker.io/tailwarden/tailwarden-dataplane, version: "0.1.0"}
  ingest: {replicas: {min: 5, max: 2}}
BAD

"$CARGO_TARGET_DIR/debug/tailwarden-demo" "${demo_args[@]}"
say "Demo complete"
