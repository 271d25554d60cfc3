#!/usr/bin/env bash
# The local end-to-end demo: a real Kubernetes control plane on loopback (kube-apiserver, etcd,
# kube-controller-manager, kube-scheduler, kwok), the RetailPipeline CRD, the operator, and the
# sample pipelines under examples/. It shows the operator reconciling them until Ready, then
# stops everything. Pass --keep to leave the cluster and operator running.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TAILWARDEN_CACHE=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TAILWARDEN_CACHE/target}
keep=0
[[ ${1:-} == --keep ]] && keep=1
cd "$root"

say() { printf '\n==> %s\n' "$*"; }

say "Building the local control plane (cached under $TAILWARDEN_CACHE) and the workspace"
"$root/tests/cluster/build.sh"
cargo build --bins

state=$root/.tailwarden-state
"$root/tests/cluster/down.sh" "$state" >/dev/null 2>&1 || true
operator_pid=
stop() {
  local rc=$?
  if [[ $keep == 1 && $rc == 0 ]]; then
    say "Left running. KUBECONFIG=$state/kubeconfig; stop with: tests/cluster/down.sh $state; kill $operator_pid"
    exit 0
  fi
  [[ -n $operator_pid ]] && kill "$operator_pid" 2>/dev/null || true
  "$root/tests/cluster/down.sh" "$state" >/dev/null 2>&1 || true
  exit "$rc"
}
trap stop EXIT

say "Starting the control plane"
TAILWARDEN_SKIP_BUILD=1 "$root/tests/cluster/up.sh" "$state"
# shellcheck disable=SC1091
source "$state/env"
kubectl=$TAILWARDEN_BIN/kubectl

say "Installing the RetailPipeline CRD"
"$kubectl" apply --server-side -f crds/retailpipelines.tailwarden.io.yaml
"$kubectl" wait --for=condition=Established crd/retailpipelines.tailwarden.io --timeout=60s

say "Starting the operator (logs: $state/logs/operator.log)"
"$kubectl" create namespace tailwarden-system --dry-run=client -o yaml | "$kubectl" apply -f -
"$CARGO_TARGET_DIR/debug/tailwarden-operator" --lease-namespace tailwarden-system \
  --metrics-addr 127.0.0.1:0 >"$state/logs/operator.log" 2>&1 &
operator_pid=$!

say "Applying the sample pipelines"
"$kubectl" apply -f examples/pipeline-embedded.yaml -f examples/pipeline-cassandra.yaml
"$kubectl" wait --for=condition=Ready rp/storefront rp/catalog --timeout=120s

say "kubectl get retailpipelines"
"$kubectl" get rp
say "Children of the distributed pipeline"
"$kubectl" get deploy,svc,cm,pdb -l app.kubernetes.io/instance=catalog
say "Status of rp/catalog"
"$kubectl" get rp catalog -o jsonpath='{.status}' | python3 -m json.tool
say "Events"
"$kubectl" get events --field-selector involvedObject.kind=RetailPipeline

say "A bad spec is rejected by the API server, naming the field"
if "$kubectl" apply -f - <<'BAD' 2>&1; then exit 1; fi
apiVersion: tailwarden.io/v1alpha1
kind: RetailPipeline
metadata: {name: broken}
spec:
  dataplane: {image: registry.example.com/tailwarden/dataplane, version: "0.1.0"}
  ingest: {replicas: {min: 5, max: 2}}
BAD
say "Demo complete"
