#!/usr/bin/env bash
# Operator RSS with N RetailPipelines and the SLO engine on: the release operator against the
# local control plane (tests/cluster) and a real Prometheus scraping a synthetic data plane for
# every pipeline (slo_bench's exporter). Prints VmRSS/VmHWM and the engine's pass times as the
# fleet converges, then stops everything. docs/benchmarks.md records the figures.
#
# Usage: tests/bench/operator-rss.sh [pipelines (1000)] [minutes after convergence (3)]
# STOP_AFTER=<seconds>: instead, send the operator SIGTERM that long after its start (while the
# fleet's reconciles are still queued) and report how long it takes to exit. Either way the run
# ends with a SIGTERM and the time to exit.
# SCRAPE (30s) and EVALUATION (30s) set Prometheus's scrape interval and the engine's: on 2 cores,
# Prometheus answering a 1,000-pipeline pass every 15 s starves the API server while it creates
# 4,000 children.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
n=${1:-1000}
settle_min=${2:-3}
scrape=${SCRAPE:-30s}
evaluation=${EVALUATION:-30s}
export TAILWARDEN_CACHE=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
export CARGO_TARGET_DIR=${BENCH_TARGET_DIR:-$TAILWARDEN_CACHE/target-bench}
export PATH=$TAILWARDEN_CACHE/bin:$PATH
cd "$root"
cargo build -q --release -p tailwarden-operator --bin tailwarden-operator
cargo build -q --release -p tailwarden-tests --bin slo_bench
bin=$CARGO_TARGET_DIR/release
state=$(mktemp -d "${TMPDIR:-/tmp}/tailwarden-rss.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$root/tests/cluster/down.sh" "$state/cluster" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

read -r p_exp p_prom p_op < <(python3 -c '
import random, socket
ports = []
while len(ports) < 3:
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); ports.append(p)
    except OSError:
        pass
    s.close()
print(*ports)')

# 2,000 Services do not fit the harness's default /24 service range.
TAILWARDEN_SKIP_BUILD=1 TAILWARDEN_APISERVER_ARGS="--service-cluster-ip-range=10.96.0.0/16" \
  tests/cluster/up.sh "$state/cluster" >"$state/up.log" 2>&1
# shellcheck disable=SC1091
source "$state/cluster/env"
kubectl=$TAILWARDEN_CACHE/bin/kubectl

"$bin/slo_bench" exporter --pipelines "$n" --namespaces 10 --port "$p_exp" &
pids+=($!)
mkdir -p "$state/prom"
cat >"$state/prom/prometheus.yml" <<PROM
global: {scrape_interval: $scrape, scrape_timeout: 15s, evaluation_interval: $scrape}
scrape_configs:
  - job_name: dataplane
    honor_labels: true
    static_configs: [{targets: ["127.0.0.1:$p_exp"]}]
PROM
prometheus --config.file="$state/prom/prometheus.yml" --storage.tsdb.path="$state/prom/data" \
  --web.listen-address="127.0.0.1:$p_prom" >"$state/prom/log" 2>&1 &
pids+=($!)

"$kubectl" apply --server-side -f crds/retailpipelines.tailwarden.io.yaml >/dev/null
python3 - "$n" >"$state/pipelines.yaml" <<'EOF'
import sys
n = int(sys.argv[1])
for ns in range(10):
    print(f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: bench-{ns:02}}}")
for i in range(n):
    print(f"""---
apiVersion: tailwarden.io/v1alpha1
kind: RetailPipeline
metadata: {{name: p{i:04}, namespace: bench-{i % 10:02}}}
spec:
  dataplane: {{image: example.com/tailwarden/dataplane, version: "1.0.0"}}
  storage: {{cassandra: {{contactPoints: ["cassandra:9042"], keyspace: retail}}}}
  serve: {{replicas: {{min: 1, max: 20}}}}
  ingest: {{replicas: {{min: 1, max: 20}}}}""")
EOF
"$kubectl" apply -f "$state/pipelines.yaml" >/dev/null

RUST_LOG=warn "$bin/tailwarden-operator" --leader-elect=false \
  --prometheus-url "http://127.0.0.1:$p_prom" --metrics-addr "127.0.0.1:$p_op" \
  --evaluation-interval "$evaluation" \
  >"$state/operator.log" 2>&1 &
op=$!
pids+=("$op")
start=$SECONDS
report() {
  local deploys passes rss
  deploys=$("$kubectl" get deploy -A --no-headers 2>/dev/null | wc -l)
  passes=$(curl -s "127.0.0.1:$p_op/metrics" | grep -E '^tailwarden_operator_slo_pass_duration_seconds_(sum|count)' \
    | awk '{print $2}' | paste -sd' ' || true)
  rss=$(grep -E 'VmRSS|VmHWM' "/proc/$op/status" | awk '{print $1 $2 "kB"}' | paste -sd' ')
  echo "t=$((SECONDS - start))s deployments=$deploys/$((2 * n)) engine pass sum/count: ${passes:-none} $rss"
  [[ $deploys -ge $((2 * n)) ]]
}
# stop_operator: SIGTERM, and how long until the process is gone (at most 60 s, then SIGKILL).
stop_operator() {
  local t0=$EPOCHREALTIME
  kill -TERM "$op"
  for _ in $(seq 600); do
    kill -0 "$op" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$op" 2>/dev/null; then
    echo "SIGTERM: the operator did not exit within 60 s; killing it"
    kill -KILL "$op"
  else
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "SIGTERM: exited after %.0f ms\n", (b - a) * 1000 }'
  fi
}
if [[ -n ${STOP_AFTER:-} ]]; then
  sleep "$STOP_AFTER"
  report || true
  stop_operator
  exit 0
fi
until report; do
  kill -0 "$op" || { echo "the operator exited:"; tail -20 "$state/operator.log"; exit 1; }
  ((SECONDS - start < 1800)) || { echo "not converged in 30 min"; exit 1; }
  sleep 10
done
echo "converged after $((SECONDS - start)) s; watching ${settle_min} more minutes of SLO passes"
end=$((SECONDS + 60 * settle_min))
while ((SECONDS < end)); do sleep 30; report || true; done
echo "slow passes by bucket:"
curl -s "127.0.0.1:$p_op/metrics" | grep -E '^tailwarden_operator_slo_pass_duration_seconds_bucket'
stop_operator
