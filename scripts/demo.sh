#!/usr/bin/env bash
# The local end-to-end demo: a real Kubernetes control plane on loopback (kube-apiserver, etcd,
# kube-controller-manager, kube-scheduler, kwok), the RetailPipeline CRD, the operator, and the
# sample pipelines under examples/. The operator reconciles them until Ready; then a real
# data-plane worker takes load on loopback, a real Prometheus scrapes it, and the operator's SLO
# engine reads the SLIs and budgets of the `catalog` pipeline from it. Then everything stops.
# Pass --keep to leave the cluster, operator, worker and Prometheus running.
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
"$root/tests/prometheus/install.sh"
cargo build --bins

state=$root/.tailwarden-state
"$root/tests/cluster/down.sh" "$state" >/dev/null 2>&1 || true
operator_pid=
pids=()
stop() {
  local rc=$?
  if [[ $keep == 1 && $rc == 0 ]]; then
    say "Left running. KUBECONFIG=$state/kubeconfig; stop with: tests/cluster/down.sh $state; kill $operator_pid ${pids[*]}"
    exit 0
  fi
  [[ -n $operator_pid ]] && kill "$operator_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
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
  --metrics-addr 127.0.0.1:0 --status-addr 127.0.0.1:0 >"$state/logs/operator.log" 2>&1 &
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
  dataplane: {image: docker.io/tailwarden/tailwarden-dataplane, version: "0.1.0"}
  ingest: {replicas: {min: 5, max: 2}}
BAD
say "A real data-plane worker takes load; a real Prometheus scrapes it for rp/catalog"
# The kwok-simulated pods cannot run code, so one standalone worker on loopback stands in for the
# catalog pipeline's workers; Prometheus labels its series namespace=default, pipeline=catalog.
read -r p_ingest p_serve p_metrics p_prom < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
bin=$CARGO_TARGET_DIR/debug
mkdir -p "$state/dataplane" "$state/prometheus"
"$bin/tailwarden-dataplane" --role standalone --data-dir "$state/dataplane" \
  --listen-ingest "127.0.0.1:$p_ingest" --listen-serve "127.0.0.1:$p_serve" \
  --listen-metrics "127.0.0.1:$p_metrics" >"$state/logs/dataplane.log" 2>&1 &
pids+=($!)
# The SLO rules of rp/catalog, as the Prometheus Operator would load its PrometheusRule: the engine
# then reads the recorded slo:sli_error:ratio_rate<window> series instead of raw counters.
"$bin/render-rules" examples/pipeline-cassandra.yaml >"$state/prometheus/rules.yml"
cat >"$state/prometheus/prometheus.yml" <<PROM
global: {scrape_interval: 2s, evaluation_interval: 2s}
rule_files: ["$state/prometheus/rules.yml"]
scrape_configs:
  - job_name: catalog
    static_configs:
      - targets: ["127.0.0.1:$p_metrics"]
        labels: {namespace: default, pipeline: catalog}
PROM
prometheus --config.file="$state/prometheus/prometheus.yml" --storage.tsdb.path="$state/prometheus/data" \
  --web.listen-address="127.0.0.1:$p_prom" >"$state/logs/prometheus.log" 2>&1 &
pids+=($!)
wait_http() {
  local url=$1 deadline=$((SECONDS + 60))
  until curl -sf "$url" >/dev/null; do
    ((SECONDS < deadline)) || { echo "timed out waiting for $url" >&2; return 1; }
    sleep 0.5
  done
}
wait_http "http://127.0.0.1:$p_metrics/readyz"
wait_http "http://127.0.0.1:$p_prom/-/ready"
"$bin/tailwarden-loadgen" snapshot --products 20000 --out "$state/dataplane/baseline.ndjson" >/dev/null
curl -sf -X POST --data-binary @"$state/dataplane/baseline.ndjson" "http://127.0.0.1:$p_ingest/v1/snapshots" >/dev/null
"$kubectl" patch rp catalog --type merge -p "{\"spec\":{\"prometheus\":{\"url\":\"http://127.0.0.1:$p_prom\"}}}"
say "Load: 500 reads/s and 5,000 updates/s for 45 s; waiting for the SLO engine to read them"
"$bin/tailwarden-loadgen" run --ingest "127.0.0.1:$p_ingest" --serve "127.0.0.1:$p_serve" \
  --read-rate 500 --write-rate 5000 --duration 45 --keys 20000 >"$state/logs/loadgen.log" 2>&1 &
load=$!
# Every SLI needs a few scrapes of history (rates over 5m windows) before the engine has them all.
"$kubectl" wait --for=condition=MetricsAvailable rp/catalog --timeout=120s
"$kubectl" get rp
say "SLIs and budget of rp/catalog, read from Prometheus, and its decision history"
"$kubectl" get rp catalog -o jsonpath='{.status.slis}{"\n"}{.status.budget}{"\n"}{.status.decisions}{"\n"}' | python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if line: print(json.dumps(json.loads(line), indent=2))'
"$kubectl" get rp catalog -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
say "Recorded SLI error ratios of rp/catalog in Prometheus (what the engine reads)"
curl -sf "http://127.0.0.1:$p_prom/api/v1/query" \
  --data-urlencode 'query=slo:sli_error:ratio_rate5m{pipeline="catalog"}' | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    slo, value = r["metric"]["slo"], float(r["value"][1])
    print("  %-28s 5m error ratio %.6f" % (slo, value))'
wait "$load" || true
say "Load generator report"
tail -n 15 "$state/logs/loadgen.log"
say "Demo complete"
