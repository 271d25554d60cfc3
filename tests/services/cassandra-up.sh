#!/usr/bin/env bash
# cassandra-up.sh STATE_DIR: start a single Cassandra 5.0.9 node, CQL on 127.0.0.1 (or on
# TAILWARDEN_SERVICES_HOST), all of its data under STATE_DIR (fresh every time), and wait until it
# serves CQL clients.
#
# Writes (a Kafka started by kafka-up.sh may share STATE_DIR):
#   STATE_DIR/env                  TAILWARDEN_CASSANDRA* lines (contact point, ...); source it
#   STATE_DIR/cassandra/           cassandra.yaml and the data, commit log, hints, caches
#   STATE_DIR/logs/cassandra.log   the node's log
#   STATE_DIR/pids/cassandra.pid
# Stop it with down.sh STATE_DIR (or down.sh STATE_DIR cassandra).
# On any failure: prints the tail of the log, stops what it started, exits 1.
#
# Tunables (environment):
#   TAILWARDEN_CACHE            jars from $TAILWARDEN_CACHE/services (build.sh)
#   TAILWARDEN_SKIP_BUILD=1     do not call build.sh (a few ms when warm anyway)
#   TAILWARDEN_UP_TIMEOUT       seconds allowed for the node to become ready (default 120)
#   TAILWARDEN_CASSANDRA_HEAP   -Xmx of the node (default 512m)
#   TAILWARDEN_CASSANDRA_JVM_OPTS  extra JVM options for the node (split on spaces)
#   TAILWARDEN_REUSE=1          restart a node that was stopped in STATE_DIR on its data and ports
#                               (cassandra.yaml rewritten the same), e.g. in a fault test
#                               (dataplane/tests/faults.rs); give the same TAILWARDEN_CASSANDRA_AUTH
#   TAILWARDEN_CASSANDRA_AUTH=1 PasswordAuthenticator + CassandraAuthorizer: clients must log in;
#                               the default superuser cassandra/cassandra exists (the script waits
#                               for it) and is written to env as TAILWARDEN_CASSANDRA_USER/PASSWORD
set -euo pipefail

LOG_PREFIX=cassandra-up.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
source "$here/lib.sh"

if [[ $# -ne 1 || -z $1 ]]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
service=cassandra
state=$(state_dir "$1")
timeout=${TAILWARDEN_UP_TIMEOUT:-120}
heap=${TAILWARDEN_CASSANDRA_HEAP:-512m}
read -r -a jvm_opts <<<"${TAILWARDEN_CASSANDRA_JVM_OPTS:-}"
auth=${TAILWARDEN_CASSANDRA_AUTH:-0}
up_init

if [[ ${TAILWARDEN_SKIP_BUILD:-0} != 1 ]]; then
  "$here/build.sh"
fi
[[ -d $svc/cassandra/lib ]] || die "$svc/cassandra/lib missing; run tests/services/build.sh"
command -v java >/dev/null || die "java not on PATH"
command -v python3 >/dev/null || die "python3 not on PATH (used to pick free ports)"

home=$state/cassandra
if [[ ${TAILWARDEN_REUSE:-0} == 1 ]]; then
  # The previous run's data and ports (read back from its cassandra.yaml).
  [[ -f $home/cassandra.yaml ]] || die "TAILWARDEN_REUSE=1: no previous node in $home"
  cql_port=$(sed -n 's/^native_transport_port: //p' "$home/cassandra.yaml")
  host=$(sed -n 's/^rpc_address: //p' "$home/cassandra.yaml")
  storage_port=$(sed -n 's/^storage_port: //p' "$home/cassandra.yaml")
  [[ -n $cql_port && -n $storage_port ]] || die "TAILWARDEN_REUSE=1: cannot read $home/cassandra.yaml"
  rm -f "$state/pids/cassandra.pid"
  env_drop "$state" TAILWARDEN_CASSANDRA
  log "reusing $home: ports: cql=$cql_port storage=$storage_port"
else
  # Fresh state every time.
  rm -rf "$home" "$state/logs/cassandra.log" "$state/pids/cassandra.pid"
  env_drop "$state" TAILWARDEN_CASSANDRA
  mkdir -p "$home/triggers" "$state/logs" "$state/pids"

  read -r cql_port storage_port < <(free_ports 2)
  [[ -n ${storage_port:-} ]] || die "could not pick free ports"
  log "ports: cql=$cql_port storage=$storage_port"
fi

if [[ $auth == 1 ]]; then
  authenticator=PasswordAuthenticator
  authorizer=CassandraAuthorizer
else
  authenticator=AllowAllAuthenticator
  authorizer=AllowAllAuthorizer
fi

cat >"$home/cassandra.yaml" <<EOF
# Written by tests/services/cassandra-up.sh: one node; gossip on loopback, CQL on $host.
cluster_name: tailwarden-test
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage_port"
listen_address: 127.0.0.1
rpc_address: $host
storage_port: $storage_port
native_transport_port: $cql_port
start_native_transport: true
data_file_directories:
  - $home/data
commitlog_directory: $home/commitlog
saved_caches_directory: $home/saved_caches
hints_directory: $home/hints
cdc_raw_directory: $home/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
# Small memtables for a 512 MiB heap.
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
# DROP and TRUNCATE in tests should not leave snapshots behind.
auto_snapshot: false
authenticator: $authenticator
authorizer: $authorizer
role_manager: CassandraRoleManager
# A new cluster: no need to stay readable by Cassandra 4.
storage_compatibility_mode: NONE
EOF

t_start=$SECONDS
# -Dcassandra-foreground keeps the log on stdout/stderr (otherwise the daemon closes them).
# superuser_setup_delay_ms=0: the default superuser is created right away instead of ~10 s later.
# skip_wait_for_gossip_to_settle=0: one node has nobody to wait for.
# No JMX port is set, so no JMX server runs (and nodetool cannot connect).
# Cassandra mlockall()s the JVM's memory at start whenever it may, which as root is always: every
# committed page of the heap becomes resident and locked at once. Without CAP_IPC_LOCK (and with a
# small RLIMIT_MEMLOCK) the call fails; Cassandra logs that and carries on.
# TAILWARDEN_CASSANDRA_MLOCK=1 keeps the lock.
wrapper=()
if [[ ${TAILWARDEN_CASSANDRA_MLOCK:-0} != 1 ]]; then
  ulimit -S -l 64 2>/dev/null || true
  if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
    wrapper=(setpriv --bounding-set -ipc_lock)
  fi
fi
start_jvm "$state/logs/cassandra.log" "${wrapper[@]}" java "-Xmx$heap" -XX:+ExitOnOutOfMemoryError "${jvm_opts[@]}" \
  "@$here/conf/cassandra-jvm17.args" \
  -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
  -Dcassandra-foreground=yes \
  "-Dcassandra.config=file://$home/cassandra.yaml" \
  "-Dcassandra.storagedir=$home" \
  "-Dcassandra.logdir=$state/logs" "-Dcassandra.triggers_dir=$home/triggers" \
  -Dcassandra.superuser_setup_delay_ms=0 \
  -Dcassandra.skip_wait_for_gossip_to_settle=0 \
  "-Dlogback.configurationFile=$here/conf/cassandra-logback.xml" \
  "-Dtailwarden.service=$service" "-Dtailwarden.dir=$state" \
  -cp "$svc/cassandra/lib/*" org.apache.cassandra.service.CassandraDaemon
log "started node (pid $jvm_pid, -Xmx$heap, authenticator $authenticator)"
wait_for "CQL port $cql_port" port_open "$cql_port"
wait_for "\"listening for CQL clients\" in the log" log_has "$state/logs/cassandra.log" "listening for CQL clients"

creds=()
if [[ $auth == 1 ]]; then
  # The CQL port opens before the default superuser is written; log in until that works.
  export TAILWARDEN_CASSANDRA_USER=cassandra TAILWARDEN_CASSANDRA_PASSWORD=cassandra
  left=$((timeout - (SECONDS - t_start)))
  ((left > 5)) || left=5
  cql_tool -w "$left" "$host:$cql_port" "SELECT release_version FROM system.local" \
    >"$state/logs/cassandra-login.log" 2>&1 ||
    die "cannot log in as cassandra/cassandra: $(tail -n 1 "$state/logs/cassandra-login.log")"
  log "ready: login as the default superuser cassandra"
  creds=("export TAILWARDEN_CASSANDRA_USER=cassandra" "export TAILWARDEN_CASSANDRA_PASSWORD=cassandra")
fi

env_set "$state" TAILWARDEN_CASSANDRA \
  "export TAILWARDEN_CASSANDRA=$host:$cql_port" \
  "export TAILWARDEN_CASSANDRA_STORAGE_PORT=$storage_port" \
  "export TAILWARDEN_CASSANDRA_PID=$jvm_pid" \
  "export TAILWARDEN_CASSANDRA_LOG=$(printf %q "$state/logs/cassandra.log")" \
  "${creds[@]}"

up_done
log "cassandra up in $((SECONDS - t_start)) s: CQL at $host:$cql_port, RSS $(rss_mib "$jvm_pid") MiB (. $state/env)"
