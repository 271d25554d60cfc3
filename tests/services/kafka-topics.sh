#!/usr/bin/env bash
# kafka-topics.sh STATE_DIR COMMAND ARGS...: manage topics of the broker that kafka-up.sh started in
# STATE_DIR (its address comes from STATE_DIR/env), with tools/KafkaTool.java, which build.sh
# compiled against the broker's own kafka-clients jar (no kafka-tools, no shell distribution).
#
#   create NAME PARTITIONS [REPLICATION_FACTOR]   returns once every partition has a leader;
#                                                 fails if the topic exists
#   delete NAME...
#   list                                          every topic, internal ones too, one a line
#   describe NAME                                 "NAME PARTITIONS", then "PARTITION LEADER" lines
#   produce TOPIC VALUE...                        one record per VALUE, acks=all
#   consume TOPIC COUNT [TIMEOUT_S]               the first COUNT values from the beginning of
#                                                 every partition (no consumer group), one a line
# Each call is one short JVM (about 1-2 s). Exit status: 0 ok, 1 failure, 2 usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_PREFIX=kafka-topics.sh
# shellcheck source=tests/services/lib.sh
source "$here/lib.sh"

if [[ $# -lt 2 ]]; then
  sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
[[ -f $1/env ]] || { echo "kafka-topics.sh: $1/env missing; run kafka-up.sh $1 first" >&2; exit 1; }
bootstrap=$(env_get "$1" TAILWARDEN_KAFKA_BOOTSTRAP)
[[ -n $bootstrap ]] || { echo "kafka-topics.sh: no Kafka in $1/env; run kafka-up.sh $1 first" >&2; exit 1; }
[[ -f $svc/tools/kafka/KafkaTool.class ]] || { echo "kafka-topics.sh: run tests/services/build.sh first" >&2; exit 1; }
shift

kafka_tool "$bootstrap" "$@"
