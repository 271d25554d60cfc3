#!/usr/bin/env bash
# Restart time of docs/benchmarks.md: start-to-ready (process spawn until GET /readyz returns 200)
# of the standalone data plane after 1 M, 10 M and 50 M ingested updates, once after SIGTERM and
# once after kill -9, with a fresh start (empty data dir) as the yardstick. Release build.
# Usage: dataplane/bench/recovery.sh [milestone ...]   (default: 1000000 10000000 50000000)
# Environment: BENCH_DIR (work dir), BENCH_RATE (updates/s requested, default 150000),
# BENCH_TOPUP (updates ingested between the SIGTERM and the kill -9 measurement, default 500000),
# BENCH_ARGS (extra server flags, e.g. "--store-flush-mb 16").
set -euo pipefail
T=${CARGO_TARGET_DIR:-$HOME/.cache/tailwarden/target-dataplane}/release
W=${BENCH_DIR:-/tmp/tailwarden-bench-recovery}
RATE=${BENCH_RATE:-150000}
TOPUP=${BENCH_TOPUP:-500000}
MILESTONES=${*:-1000000 10000000 50000000}
ADDRS="--ingest 127.0.0.1:28080 --serve 127.0.0.1:28081"
DATA="$W/data"
mkdir -p "$W"
CONF="$W/bench.yaml"
cat > "$CONF" <<YAML
listen: {ingest: "127.0.0.1:28080", serve: "127.0.0.1:28081", metrics: "127.0.0.1:29090"}
ingest:
  partitions: 16
  batch: {maxRecords: 20000, linger: 2ms}
  queueCapacity: 200000
  deadLetter: {retention: 7d, maxRecords: 1000000}
YAML

server_pid=""
ingested=0
load() { cut -d' ' -f1-3 /proc/loadavg; }
journal_mb() { find "$1" -maxdepth 1 -name '*.jnl' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {printf "%.1f", s/1048576}'; }
# Spawns the server on `$1`; sets `ready_ms` to the milliseconds until /readyz answers 200.
ready_ms=""
start() {
  local t0 t1
  t0=$(date +%s%N)
  "$T/tailwarden-dataplane" --config "$CONF" --data-dir "$1" ${BENCH_ARGS:-} 2>>"$W/server.log" &
  server_pid=$!
  until curl -sf -o /dev/null 127.0.0.1:29090/readyz; do
    kill -0 "$server_pid" 2>/dev/null || { echo "server exited; see $W/server.log" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  ready_ms=$(((t1 - t0) / 1000000))
}
updates() { curl -s 127.0.0.1:29090/metrics | awk '/^tailwarden_store_logical_updates_total/ {print $2}'; }
term() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
crash() { kill -KILL "$server_pid"; wait "$server_pid" 2>/dev/null || true; }
# Ingests until `$1` updates in total were acknowledged (the counter restarts with the process).
ingest_to() {
  local base=$ingested now secs
  while [ "$ingested" -lt "$1" ]; do
    secs=$((($1 - ingested + RATE - 1) / RATE))
    "$T/tailwarden-loadgen" run $ADDRS --write-rate "$RATE" --batch 5000 --write-connections 4 \
      --duration "$((secs < 2 ? 2 : secs))" --keys 100000 >/dev/null || true
    now=$(updates)
    ingested=$((base + ${now%.*}))
  done
}
measure() { # label
  local jnl
  jnl=$(journal_mb "$DATA")
  start "$DATA"
  printf '%-34s start-to-ready %6s ms  journals before start %7s MB  load %s\n' "$1" "$ready_ms" "$jnl" "$(load)"
}

echo "machine: $(nproc) cores; binary: $T/tailwarden-dataplane; load before: $(load)"
for i in 1 2 3; do
  rm -rf "$W/fresh"
  start "$W/fresh"
  printf '%-34s start-to-ready %6s ms  load %s\n' "fresh start #$i" "$ready_ms" "$(load)"
  term
done
rm -rf "$DATA" "$W/fresh"
start "$DATA"
for m in $MILESTONES; do
  ingest_to "$m"
  total=$ingested
  term
  measure "after $total updates, SIGTERM"
  ingest_to $((total + TOPUP))
  base=$ingested
  crash
  measure "after $base updates, kill -9"
done
term
echo "data dir: $(du -sh "$DATA" | cut -f1); load after: $(load)"
