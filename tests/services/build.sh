#!/usr/bin/env bash
# Resolves the real servers the tests run, from Maven Central, with their runtime dependencies:
#   Kafka 4.1.2 (org.apache.kafka:kafka_2.13 + log4j-slf4j-impl, so the broker logs)  kafka/pom.xml
#   Cassandra 5.0.9 (org.apache.cassandra:cassandra-all)                               cassandra/pom.xml
# and compiles the two small clients in tools/ (KafkaTool, CqlTool) against those jars.
#
# Everything goes under ${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}:
#   maven/                       Maven's local repository (-Dmaven.repo.local)
#   services/kafka/lib/*.jar     the broker's class path       (services/kafka/pom.xml: a copy)
#   services/cassandra/lib/*.jar the node's class path         (services/cassandra/pom.xml: a copy)
#   services/tools/{kafka,cql}/  the compiled tools
#   services/.stamp              hash of the inputs
# Nothing is written into the repository.
#
# Skips everything when services/.stamp matches the hash of the poms, the tools' sources and the
# scripts, so a warm call costs a few milliseconds. Installs Maven and a JDK 17 from Debian when
# they are missing (needs root, as on CI).
set -euo pipefail

LOG_PREFIX=services/build.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
source "$here/lib.sh"
stamp=$svc/.stamp

inputs_hash() {
  (cd "$here" && cat kafka/pom.xml cassandra/pom.xml tools/KafkaTool.java tools/CqlTool.java build.sh) \
    | sha256sum | cut -d' ' -f1
}

ensure_tools() {
  java_ok || "$here/../debian-install.sh" javac openjdk-17-jdk-headless
  java_ok || { log "need java and javac >= 17 on PATH"; return 1; }
  "$here/../debian-install.sh" mvn maven
}

# resolve NAME: copy NAME/pom.xml's runtime dependencies into $svc/NAME/lib. Maven runs on a copy
# of the pom in the cache, so not even a target/ directory appears in the repository. The jars go
# to lib.new first: a failed or interrupted run never leaves a half-filled lib/.
resolve() {
  local name=$1 work=$svc/$1
  mkdir -p "$work" "$cache/maven"
  cp "$here/$name/pom.xml" "$work/pom.xml"
  rm -rf "$work/lib.new"
  # Maven's output goes to a log, shown only on failure: it warns about the invalid poms of
  # Cassandra's sjk-jfr* dependencies (harmless), and even -q -B prints colour codes.
  if ! mvn -q -B -Dstyle.color=never -f "$work/pom.xml" -Dmaven.repo.local="$cache/maven" \
       -Dservices.lib="$work/lib.new" dependency:copy-dependencies </dev/null >"$work/mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$work/mvn.log" >&2
    log "mvn dependency:copy-dependencies failed for $work/pom.xml"
    return 1
  fi
  rm -rf "${work:?}/lib"
  mv "$work/lib.new" "$work/lib"
  log "$name: $(find "$work/lib" -name '*.jar' | wc -l) jars, $(du -sm "$work/lib" | cut -f1) MB in $work/lib"
}

# compile NAME SOURCE LIB: javac SOURCE against LIB/*.jar into $svc/tools/NAME.
compile() {
  local out=$svc/tools/$1
  rm -rf "$out.new"
  mkdir -p "$out.new"
  javac -nowarn -encoding UTF-8 --release 17 -d "$out.new" -cp "$3/*" "$here/tools/$2"
  rm -rf "$out"
  mv "$out.new" "$out"
}

main() {
  local t0 want
  t0=$(date +%s.%N)
  want=$(inputs_hash)
  if [[ -f $stamp && $(cat "$stamp") == "$want" && -d $svc/kafka/lib && -d $svc/cassandra/lib &&
        -f $svc/tools/kafka/KafkaTool.class && -f $svc/tools/cql/CqlTool.class ]]; then
    log "up to date in $svc (stamp $want)"
    return 0
  fi
  rm -f "$stamp"
  step "java 17 + maven (apt if missing)" ensure_tools
  step "resolve kafka 4.1.2" resolve kafka
  step "resolve cassandra 5.0.9" resolve cassandra
  step "compile tools/KafkaTool.java" compile kafka KafkaTool.java "$svc/kafka/lib"
  step "compile tools/CqlTool.java" compile cql CqlTool.java "$svc/cassandra/lib"
  echo "$want" >"$stamp"
  log "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%-40s %6.1fs", "total", b - a }')"
}

main "$@"
