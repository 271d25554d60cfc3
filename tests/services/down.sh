#!/usr/bin/env bash
# down.sh STATE_DIR [kafka|cassandra]...: stop the servers that kafka-up.sh / cassandra-up.sh
# started in STATE_DIR (all of them unless named). SIGTERM first, SIGKILL after a bounded wait
# (TAILWARDEN_DOWN_GRACE seconds, default 60: Cassandra flushes its memtables on SIGTERM).
#
# Only a process that still runs java with -Dtailwarden.dir=STATE_DIR (and the service's
# -Dtailwarden.service=) in its command line is signalled: the pid files name the candidates, and
# a scan of /proc finds such JVMs whose pid file was lost. A stale pid file never gets an
# unrelated process killed. Idempotent: succeeds when nothing runs or STATE_DIR does not exist.
# Removes the service's lines from STATE_DIR/env; leaves data and logs for inspection (the up
# scripts start from a clean state anyway).
set -euo pipefail

LOG_PREFIX=down.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/services/lib.sh
source "$here/lib.sh"

if [[ $# -lt 1 || -z $1 ]]; then
  echo "usage: $0 STATE_DIR [kafka|cassandra]..." >&2
  exit 2
fi
[[ -d $1 ]] || exit 0
state=$(cd "$1" && pwd -P)
shift
services=("$@")
((${#services[@]})) || services=(kafka cassandra)
grace=${TAILWARDEN_DOWN_GRACE:-60}

declare -A victims=()   # pid -> service
for s in "${services[@]}"; do
  case $s in kafka | cassandra) ;; *) echo "down.sh: unknown service $s" >&2; exit 2 ;; esac
  f=$state/pids/$s.pid
  if [[ -f $f ]] && our_jvm "$(cat "$f")" "$state" "$s"; then
    victims[$(cat "$f")]=$s
  fi
  for pid in $(our_jvms "$state" "$s"); do
    victims[$pid]=$s
  done
done

t0=$(date +%s.%N)
for pid in "${!victims[@]}"; do
  kill -TERM "$pid" 2>/dev/null || true
  log "SIGTERM ${victims[$pid]} (pid $pid)"
done

# Wait for all of them at once, so that each one's stop time is its own.
stopped() {
  log "$(awk -v s="${victims[$1]}" -v p="$1" -v a="$t0" -v b="$(date +%s.%N)" -v how="$2" \
    'BEGIN { printf "%s (pid %s) stopped %.1fs after SIGTERM%s", s, p, b - a, how }')"
  unset "victims[$1]"
}
deadline=$((SECONDS + grace))
while ((${#victims[@]})) && ((SECONDS < deadline)); do
  for pid in "${!victims[@]}"; do
    our_jvm "$pid" "$state" "${victims[$pid]}" || stopped "$pid" ""
  done
  sleep 0.1
done
for pid in "${!victims[@]}"; do
  s=${victims[$pid]}
  our_jvm "$pid" "$state" "$s" || { stopped "$pid" ""; continue; }
  log "$s (pid $pid) still runs ${grace}s after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  kill_deadline=$((SECONDS + 10))
  while our_jvm "$pid" "$state" "$s" && ((SECONDS < kill_deadline)); do
    sleep 0.1
  done
  if our_jvm "$pid" "$state" "$s"; then
    log "ERROR: $s (pid $pid) survived SIGKILL"
    exit 1
  fi
  stopped "$pid" " (SIGKILL)"
done

# The env lines of a stopped service would point at closed ports.
for s in "${services[@]}"; do
  rm -f "$state/pids/$s.pid"
  env_drop "$state" "TAILWARDEN_${s^^}"
done
