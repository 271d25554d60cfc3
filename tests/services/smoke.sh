#!/usr/bin/env bash
# smoke.sh [STATE_DIR]: end-to-end check of tests/services.
# build.sh -> kafka-up.sh and cassandra-up.sh in one STATE_DIR -> a topic with 3 partitions, one
# record produced and read back -> a keyspace and table, one row written and read back -> down.sh
# (twice: it is idempotent) -> no JVM of ours left. Reports the time of each step and the RSS of
# both servers. On failure the state dir and its logs are kept.
#
#   TAILWARDEN_CASSANDRA_AUTH=1     Cassandra with PasswordAuthenticator; also checks that a wrong
#                                   password is refused
#   TAILWARDEN_SMOKE_PARALLEL=1     start Kafka and Cassandra at the same time
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_PREFIX=smoke
# shellcheck source=tests/services/lib.sh
source "$here/lib.sh"

# Without STATE_DIR: a temporary one, removed again when every check passed.
if [[ -n ${1:-} ]]; then
  state=$(state_dir "$1")
  own_state=0
else
  state=$(state_dir "$(mktemp -d "${TMPDIR:-/tmp}/tailwarden-services.XXXXXX")")
  own_state=1
fi
passed=0

cleanup() {
  local rc=$?
  "$here/down.sh" "$state" || true
  if ((rc != 0)); then
    echo "[smoke] FAILED (exit $rc); state and logs kept in $state" >&2
    echo "$passed passed, 1 failed"
  fi
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); echo "[smoke] PASS: $*"; }
fail() { echo "[smoke] FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

t=$(now)
"$here/build.sh"
pass "build.sh ($(since "$t"))"

export TAILWARDEN_SKIP_BUILD=1
if [[ ${TAILWARDEN_SMOKE_PARALLEL:-0} == 1 ]]; then
  t=$(now)
  "$here/kafka-up.sh" "$state" &
  kafka_up=$!
  "$here/cassandra-up.sh" "$state" &
  cassandra_up=$!
  rc=0
  wait "$kafka_up" || rc=1
  wait "$cassandra_up" || rc=1
  ((rc == 0)) || fail "kafka-up.sh or cassandra-up.sh failed"
  pass "kafka-up.sh and cassandra-up.sh in parallel ($(since "$t"))"
else
  t=$(now)
  "$here/kafka-up.sh" "$state"
  pass "kafka-up.sh ($(since "$t"))"
  t=$(now)
  "$here/cassandra-up.sh" "$state"
  pass "cassandra-up.sh ($(since "$t"))"
fi
# shellcheck source=/dev/null
. "$state/env"
echo "[smoke] RSS after start: kafka $(rss_mib "$TAILWARDEN_KAFKA_PID") MiB, cassandra $(rss_mib "$TAILWARDEN_CASSANDRA_PID") MiB"

# --- Kafka: a topic, one record there and back --------------------------------------------------
value="smoke-$RANDOM$RANDOM"
t=$(now)
"$here/kafka-topics.sh" "$state" create smoke 3
[[ $("$here/kafka-topics.sh" "$state" describe smoke | head -n 1) == "smoke 3" ]] ||
  fail "topic smoke does not have 3 partitions"
pass "kafka-topics.sh create smoke 3 + describe ($(since "$t"))"
t=$(now)
"$here/kafka-topics.sh" "$state" produce smoke "$value"
got=$("$here/kafka-topics.sh" "$state" consume smoke 1 30)
[[ $got == "$value" ]] || fail "consumed '$got', produced '$value'"
pass "produced and consumed '$value' on $TAILWARDEN_KAFKA_BOOTSTRAP ($(since "$t"))"

# --- Cassandra: a keyspace, a table, one row there and back ---------------------------------------
t=$(now)
got=$("$here/cql.sh" "$state" \
  "CREATE KEYSPACE smoke WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}" \
  "CREATE TABLE smoke.kv (k text PRIMARY KEY, v text)" \
  "INSERT INTO smoke.kv (k, v) VALUES ('key', '$value')" \
  "SELECT v FROM smoke.kv WHERE k = 'key'")
[[ $got == "$value" ]] || fail "read '$got' from smoke.kv, wrote '$value'"
pass "CQL: created smoke.kv, wrote and read '$value' on $TAILWARDEN_CASSANDRA ($(since "$t"))"

if [[ ${TAILWARDEN_CASSANDRA_AUTH:-0} == 1 ]]; then
  t=$(now)
  if out=$(TAILWARDEN_CASSANDRA_PASSWORD=wrong "$here/cql.sh" "$state" "SELECT v FROM smoke.kv" 2>&1); then
    fail "a wrong password was accepted"
  fi
  [[ $out == *AuthenticationException* ]] || fail "unexpected error for a wrong password: $out"
  pass "a wrong password is refused ($(since "$t"))"
fi
echo "[smoke] RSS after the checks: kafka $(rss_mib "$TAILWARDEN_KAFKA_PID") MiB, cassandra $(rss_mib "$TAILWARDEN_CASSANDRA_PID") MiB"

# --- down ------------------------------------------------------------------------------------------
t=$(now)
"$here/down.sh" "$state"
for pid in "$TAILWARDEN_KAFKA_PID" "$TAILWARDEN_CASSANDRA_PID"; do
  ! our_jvm "$pid" "$state" || fail "JVM $pid still runs after down.sh"
done
[[ -z $(our_jvms "$state") ]] || fail "JVMs of $state still run after down.sh: $(our_jvms "$state")"
"$here/down.sh" "$state"   # idempotent: a second call must succeed too
pass "down.sh: both stopped ($(since "$t"))"
trap - EXIT
if ((own_state)); then
  rm -rf "$state"
fi
echo "$passed passed, 0 failed"
