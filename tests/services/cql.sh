#!/usr/bin/env bash
# cql.sh STATE_DIR [STATEMENT...]: run CQL statements against the node that cassandra-up.sh started
# in STATE_DIR (contact point and, with TAILWARDEN_CASSANDRA_AUTH=1, the superuser's credentials
# come from STATE_DIR/env), with tools/CqlTool.java: the shaded DataStax driver that cassandra-all
# already depends on, so no cqlsh/Python is needed. Without STATEMENTs, reads them from standard
# input (each ends with ';' at the end of a line). Prints the rows of each result, columns separated
# by a tab. One short JVM per call (about 2-4 s). Exit status: 0 ok, 1 failure, 2 usage.
#   tests/services/cql.sh /tmp/svc "SELECT release_version FROM system.local"
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_PREFIX=cql.sh
# shellcheck source=tests/services/lib.sh
source "$here/lib.sh"

if [[ $# -lt 1 ]]; then
  sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
[[ -f $1/env ]] || { echo "cql.sh: $1/env missing; run cassandra-up.sh $1 first" >&2; exit 1; }
contact=$(env_get "$1" TAILWARDEN_CASSANDRA)
[[ -n $contact ]] || { echo "cql.sh: no Cassandra in $1/env; run cassandra-up.sh $1 first" >&2; exit 1; }
# Credentials already in the environment win (e.g. to try another role or a wrong password).
if [[ -z ${TAILWARDEN_CASSANDRA_USER:-} ]]; then
  TAILWARDEN_CASSANDRA_USER=$(env_get "$1" TAILWARDEN_CASSANDRA_USER)
  TAILWARDEN_CASSANDRA_PASSWORD=$(env_get "$1" TAILWARDEN_CASSANDRA_PASSWORD)
fi
export TAILWARDEN_CASSANDRA_USER TAILWARDEN_CASSANDRA_PASSWORD
[[ -f $svc/tools/cql/CqlTool.class ]] || { echo "cql.sh: run tests/services/build.sh first" >&2; exit 1; }
shift
cql_tool "$contact" "$@"
