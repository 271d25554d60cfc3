#!/usr/bin/env bash
# kafka-up.sh STATE_DIR: start a single Kafka 4.1.2 broker in KRaft mode (broker and controller in
# one JVM) on 127.0.0.1 (its client listener on TAILWARDEN_SERVICES_HOST when set), with fresh
# storage formatted under a random cluster id, and wait until it serves clients.
#
# Writes (a Cassandra started by cassandra-up.sh may share STATE_DIR):
#   STATE_DIR/env                TAILWARDEN_KAFKA_* lines (bootstrap address, ...); source it
#   STATE_DIR/kafka/             server.properties and the log dirs (data/)
#   STATE_DIR/logs/kafka.log     the broker's log; logs/kafka-format.log: the storage format step
#   STATE_DIR/pids/kafka.pid
# Stop it with down.sh STATE_DIR (or down.sh STATE_DIR kafka).
# On any failure: prints the tail of the logs, stops what it started, exits 1.
#
# Tunables (environment):
#   TAILWARDEN_CACHE          jars from $TAILWARDEN_CACHE/services (build.sh)
#   TAILWARDEN_SKIP_BUILD=1   do not call build.sh (a few ms when warm anyway)
#   TAILWARDEN_UP_TIMEOUT     seconds allowed for the broker to become ready (default 120)
#   TAILWARDEN_KAFKA_HEAP     -Xmx of the broker (default 512m)
#   TAILWARDEN_KAFKA_JVM_OPTS  extra JVM options for the broker (split on spaces)
#   TAILWARDEN_KAFKA_PROPERTIES  extra server.properties lines (newline separated); they come last,
#                             so they override ours, e.g. $'auto.create.topics.enable=false'
#   TAILWARDEN_REUSE=1        restart a broker that was stopped or killed in STATE_DIR on its data,
#                             ports and cluster id (no format; server.properties as it was), e.g.
#                             after a SIGKILL in a fault test (dataplane/tests/faults.rs)
set -euo pipefail

LOG_PREFIX=kafka-up.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
source "$here/lib.sh"

if [[ $# -ne 1 || -z $1 ]]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
service=kafka
state=$(state_dir "$1")
timeout=${TAILWARDEN_UP_TIMEOUT:-120}
heap=${TAILWARDEN_KAFKA_HEAP:-512m}
read -r -a jvm_opts <<<"${TAILWARDEN_KAFKA_JVM_OPTS:-}"
up_init

if [[ ${TAILWARDEN_SKIP_BUILD:-0} != 1 ]]; then
  "$here/build.sh"
fi
[[ -d $svc/kafka/lib ]] || die "$svc/kafka/lib missing; run tests/services/build.sh"
command -v java >/dev/null || die "java not on PATH"
command -v python3 >/dev/null || die "python3 not on PATH (used to pick free ports)"

props=$state/kafka/server.properties
reuse=${TAILWARDEN_REUSE:-0}
if [[ $reuse == 1 ]]; then
  # The previous run's data, ports and cluster id (read back from its files).
  [[ -f $props && -f $state/kafka/data/meta.properties ]] ||
    die "TAILWARDEN_REUSE=1: no previous broker in $state/kafka"
  port=$(sed -n 's|^listeners=PLAINTEXT://[0-9.]*:\([0-9]*\),.*|\1|p' "$props")
  host=$(sed -n 's|^listeners=PLAINTEXT://\([0-9.]*\):.*|\1|p' "$props")
  controller_port=$(sed -n 's|^controller.quorum.bootstrap.servers=127.0.0.1:\([0-9]*\)$|\1|p' "$props")
  cluster_id=$(sed -n 's/^cluster.id=//p' "$state/kafka/data/meta.properties")
  [[ -n $port && -n $controller_port && -n $cluster_id ]] || die "TAILWARDEN_REUSE=1: cannot read $props"
  rm -f "$state/pids/kafka.pid"
  env_drop "$state" TAILWARDEN_KAFKA
  log "reusing $state/kafka: ports: broker=$port controller=$controller_port"
else
  # Fresh state every time: old log dirs would carry another cluster id.
  rm -rf "$state/kafka" "$state/logs/kafka.log" "$state/logs/kafka-format.log" "$state/pids/kafka.pid"
  env_drop "$state" TAILWARDEN_KAFKA
  mkdir -p "$state/kafka/data" "$state/logs" "$state/pids"

  read -r port controller_port < <(free_ports 2)
  [[ -n ${controller_port:-} ]] || die "could not pick free ports"
  log "ports: broker=$port controller=$controller_port"

  # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding (what `StorageTool random-uuid`
  # prints; made here to save a JVM start). Kafka avoids ids starting with '-' (they would read as
  # a command-line option), and so do we.
  cluster_id=-
  while [[ $cluster_id == -* ]]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done

  cat >"$props" <<EOF
# Written by tests/services/kafka-up.sh: one KRaft node that is broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$controller_port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$state/kafka/data
# One node: every internal topic with one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
  if [[ -n ${TAILWARDEN_KAFKA_PROPERTIES:-} ]]; then
    printf '# From TAILWARDEN_KAFKA_PROPERTIES:\n%s\n' "$TAILWARDEN_KAFKA_PROPERTIES" >>"$props"
  fi
fi

common=(-Djava.awt.headless=true "-Dlog4j2.configurationFile=$here/conf/kafka-log4j2.xml"
        "-Dtailwarden.service=$service" "-Dtailwarden.dir=$state" -cp "$svc/kafka/lib/*")

# The format step is a short JVM: a small heap, C1 only and a serial GC start it fastest.
format() {
  (cd "$state/kafka" && timeout "$timeout" java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dtailwarden.log.level=WARN "${common[@]}" \
    kafka.tools.StorageTool format --standalone --cluster-id "$cluster_id" --config "$props") \
    </dev/null >"$state/logs/kafka-format.log" 2>&1 || die "formatting the storage failed"
}
[[ $reuse == 1 ]] || step "format storage (cluster id $cluster_id)" format

t_start=$SECONDS
start_jvm "$state/logs/kafka.log" java "-Xmx$heap" -XX:+ExitOnOutOfMemoryError "${jvm_opts[@]}" "${common[@]}" kafka.Kafka "$props"
log "started broker (pid $jvm_pid, -Xmx$heap)"
wait_for "broker port $port" port_open "$port"
wait_for "\"Kafka Server started\" in the log" log_has "$state/logs/kafka.log" "Kafka Server started"

env_set "$state" TAILWARDEN_KAFKA \
  "export TAILWARDEN_KAFKA_BOOTSTRAP=$host:$port" \
  "export TAILWARDEN_KAFKA_CONTROLLER=127.0.0.1:$controller_port" \
  "export TAILWARDEN_KAFKA_CLUSTER_ID=$cluster_id" \
  "export TAILWARDEN_KAFKA_PID=$jvm_pid" \
  "export TAILWARDEN_KAFKA_LOG=$(printf %q "$state/logs/kafka.log")"

up_done
log "kafka up in $((SECONDS - t_start)) s after the format: bootstrap $host:$port, RSS $(rss_mib "$jvm_pid") MiB (. $state/env)"
