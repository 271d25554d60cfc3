#!/usr/bin/env bash
# Benchmarks (a)-(e) of docs/benchmarks.md: release build, standalone, loopback.
# Usage: dataplane/bench/run-benchmarks.sh [a|b|d|e ...]   (default: all; b also reports c)
set -euo pipefail
T=${CARGO_TARGET_DIR:-$HOME/.cache/tailwarden/target-dataplane}/release
W=${BENCH_DIR:-/tmp/tailwarden-bench}
DUR=${BENCH_SECONDS:-60}
ADDRS="--ingest 127.0.0.1:28080 --serve 127.0.0.1:28081"
mkdir -p "$W" "$W/import"
CONF="$W/bench.yaml"
cat > "$CONF" <<YAML
listen: {ingest: "127.0.0.1:28080", serve: "127.0.0.1:28081", metrics: "127.0.0.1:29090"}
ingest:
  partitions: 16
  batch: {maxRecords: 20000, linger: 2ms}
  queueCapacity: 200000
  deadLetter: {retention: 7d, maxRecords: 1000000}
serve:
  cacheTtl: {product: 10m, pricing: 5s, inventory: 2s, fulfillment: 30s}
  cacheMaxEntries: 1000000
  readTimeout: 100ms
snapshots: {importDir: "$W/import"}
YAML

server_pid=""
start() { # data dir, extra args
  rm -rf "$1"
  "$T/tailwarden-dataplane" --config "$CONF" --data-dir "$1" "${@:2}" 2>"$W/server.log" &
  server_pid=$!
  until curl -sf 127.0.0.1:29090/readyz >/dev/null; do sleep 0.2; done
}
stop() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
peak_rss() { grep -E 'VmHWM|VmRSS' "/proc/$server_pid/status" | tr -s ' ' | tr '\n' ' '; echo; }
load_snapshot() { # file
  curl -sf -XPOST "127.0.0.1:28080/v1/snapshots?path=$1" >/dev/null
  until curl -sf 127.0.0.1:28080/v1/snapshots | grep -q '"active":[1-9]'; do sleep 0.5; done
}
quantile() { # metric name, quantile: from Prometheus buckets summed over labels
  curl -s 127.0.0.1:29090/metrics | python3 -c '
import sys, re, collections
name, q = sys.argv[1], float(sys.argv[2])
b = collections.defaultdict(float)
for line in sys.stdin:
    m = re.match(name + r"_bucket\{le=\"([^\"]+)\"[^}]*\} (\S+)", line)
    if m: b[float("inf") if m[1] == "+Inf" else float(m[1])] += float(m[2])
total = b[float("inf")]
for le in sorted(b):
    if b[le] >= q * total: print(f"{name} p{q*100:g} <= {le} s (count {total:.0f})"); break
' "$1" "$2"
}
metrics() { curl -s 127.0.0.1:29090/metrics | grep -E "^tailwarden_($1)" || true; }

run_a() {
  echo "== (a) ingest: 500,000 updates/s requested for ${DUR}s, bulk NDJSON of 5,000, durable acks"
  start "$W/a" --writer-cache-entries 1000000
  "$T/tailwarden-loadgen" run $ADDRS --write-rate 500000 --batch 5000 --write-connections 8 --duration "$DUR" --keys 100000 || true
  metrics "store_(logical|physical)|ingest_commit_duration_seconds_(sum|count)"
  quantile tailwarden_ingest_lag_seconds 0.99
  peak_rss; stop
}

run_b() {
  echo "== (b)+(c) 50,000 reads/s while ingesting 100,000 updates/s for ${DUR}s; freshness from the lag histogram"
  [ -f "$W/import/snap-100k.ndjson" ] || "$T/tailwarden-loadgen" snapshot --products 100000 --locations 2 --regions 1 --out "$W/import/snap-100k.ndjson"
  start "$W/b" --writer-cache-entries 1000000
  load_snapshot "$W/import/snap-100k.ndjson"
  "$T/tailwarden-loadgen" run $ADDRS --read-rate 50000 --write-rate 100000 --batch 2000 --read-connections 32 --write-connections 4 --probe-rate 50 --duration "$DUR" --keys 100000 || true
  quantile tailwarden_ingest_lag_seconds 0.99
  quantile tailwarden_read_duration_seconds 0.99
  metrics "cache_(hits|misses|evictions)_total|read_requests_total"
  peak_rss; stop
}

run_d() {
  echo "== (d) peak RSS with 10 million entities (2.5M products x product, price, inventory, fulfillment)"
  [ -f "$W/import/snap-10m.ndjson" ] || "$T/tailwarden-loadgen" snapshot --products 2500000 --locations 1 --regions 1 --out "$W/import/snap-10m.ndjson"
  start "$W/d" --store-cache-mb 256
  local t0=$SECONDS
  load_snapshot "$W/import/snap-10m.ndjson"
  echo "loaded in $((SECONDS - t0)) s"; peak_rss
  "$T/tailwarden-loadgen" run $ADDRS --read-rate 20000 --duration 20 --keys 2500000 --locations 1 || true
  peak_rss; stop
}

run_e() {
  echo "== (e) the same read load (50,000 reads/s) against a minimal axum hello-world, and against us without ingest"
  "$T/examples/hello_world" 127.0.0.1:28091 & local hello=$!
  until curl -s 127.0.0.1:28091/ >/dev/null; do sleep 0.1; done
  "$T/tailwarden-loadgen" run --serve 127.0.0.1:28091 --read-rate 50000 --read-connections 32 --duration "$DUR" || true
  kill "$hello"; wait "$hello" || true
  [ -f "$W/import/snap-100k.ndjson" ] || "$T/tailwarden-loadgen" snapshot --products 100000 --locations 2 --regions 1 --out "$W/import/snap-100k.ndjson"
  start "$W/e"
  load_snapshot "$W/import/snap-100k.ndjson"
  "$T/tailwarden-loadgen" run $ADDRS --read-rate 50000 --read-connections 32 --duration "$DUR" --keys 100000 || true
  quantile tailwarden_read_duration_seconds 0.99
  stop
}

echo "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for b in "${@:-a b d e}"; do for x in $b; do "run_$x"; done; done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
