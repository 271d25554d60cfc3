# Shared by the scripts in tests/services/: where the cache lives, logging with timestamps, free
# ports, and how a pid is recognised as one of our JVMs. Source it after setting LOG_PREFIX.
# shellcheck shell=bash

services_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
svc=$cache/services          # build.sh puts kafka/lib, cassandra/lib and tools/ here

_t_start=$(date +%s.%N)
# log MESSAGE: to stderr, with the seconds since the script started.
log() {
  awk -v p="$LOG_PREFIX" -v a="$_t_start" -v b="$(date +%s.%N)" -v m="$*" \
    'BEGIN { printf "[%s +%5.1fs] %s\n", p, b - a, m }' >&2
}

# step NAME CMD...: run a step and report its wall time.
step() {
  local name=$1 start
  shift
  start=$(date +%s.%N)
  "$@"
  log "$(awk -v n="$name" -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%-40s %6.1fs", n, b - a }')"
}

# state_dir DIR: DIR as an absolute path (created if missing). The JVMs carry it in their command
# line (-Dtailwarden.dir=...), which is how down.sh recognises them, so it must be canonical.
state_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd -P)
}

# free_ports N (tests/lib/free-ports.sh).
# shellcheck source=tests/lib/free-ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/free-ports.sh"

# The address clients reach the servers at: loopback, unless pods on the real node must reach them
# too (tests/run.sh sets this machine's own address). Internal listeners stay on loopback.
host=${TAILWARDEN_SERVICES_HOST:-127.0.0.1}

# port_open PORT: something accepts TCP connections on $host:PORT.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$host/$1" 2>/dev/null
}

# our_jvm PID STATE [SERVICE]: PID is alive, runs java, and its command line carries
# -Dtailwarden.dir=STATE (and -Dtailwarden.service=SERVICE when given). After a crash or a reboot a
# stale pid file may name an unrelated process; this never matches one.
our_jvm() {
  local pid=$1 state=$2 service=${3:-} exe
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $(basename "${exe% (deleted)}") == java ]] || return 1
  local args
  mapfile -d '' -t args <"/proc/$pid/cmdline" 2>/dev/null || return 1
  local a found_dir=0 found_service=0
  [[ -z $service ]] && found_service=1
  for a in "${args[@]}"; do
    [[ $a == "-Dtailwarden.dir=$state" ]] && found_dir=1
    [[ -n $service && $a == "-Dtailwarden.service=$service" ]] && found_service=1
  done
  ((found_dir && found_service))
}

# our_jvms STATE [SERVICE]: every pid on the machine that our_jvm accepts (finds JVMs whose pid
# file was lost, e.g. when an up script was killed right after starting one).
our_jvms() {
  local f pid
  # One grep over every command line (NUL-separated arguments, -z) is much faster than a
  # readlink per process; our_jvm then checks the executable and the service.
  while read -r f; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    if our_jvm "$pid" "$1" "${2:-}"; then echo "$pid"; fi
  done < <(grep -lzxF -- "-Dtailwarden.dir=$1" /proc/[0-9]*/cmdline 2>/dev/null)
  return 0
}

# rss_mib PID: resident set size in MiB (empty when the process is gone).
rss_mib() {
  awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || true
}

# env_set STATE PREFIX LINE...: replace the lines of STATE/env that export PREFIX* by LINE... The
# up scripts may run at the same time in one STATE dir, so this holds a lock.
env_set() {
  local state=$1 prefix=$2
  shift 2
  (
    flock 9
    {
      if [[ -f $state/env ]]; then
        grep -v "^export $prefix" "$state/env" || true
      else
        echo "# Written by tests/services/*-up.sh; source it: . $state/env"
      fi
      (($# == 0)) || printf '%s\n' "$@"
    } >"$state/env.tmp"
    mv "$state/env.tmp" "$state/env"
  ) 9>"$state/.env.lock"
}

# env_drop STATE PREFIX: remove the lines exporting PREFIX* from STATE/env.
env_drop() {
  [[ -f $1/env ]] || return 0
  env_set "$1" "$2"
}

# env_get STATE NAME: the value that STATE/env exports for NAME (empty if none).
env_get() {
  [[ -f $1/env ]] || return 0
  sed -n "s/^export $2=//p" "$1/env" | tail -n 1
}

# java_ok: a JDK (java and javac) of version 17 or newer is on the PATH.
java_ok() {
  command -v java >/dev/null && command -v javac >/dev/null || return 1
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} >= 17))
}

# --- for the *-up.sh scripts -------------------------------------------------------------------
# They set: service (kafka|cassandra), state (state_dir), timeout (seconds), and call up_init.

die() { log "ERROR: $*"; exit 1; }

# up_init: refuse to start over a running instance, then arm the failure handler: on any error the
# tail of every log of this service is printed and down.sh stops what was started (only this
# service: the other one may be running in the same STATE_DIR).
up_init() {
  local running
  running=$(our_jvms "$state" "$service")
  if [[ -n $running ]]; then
    log "ERROR: $service is already running in $state (pid ${running//$'\n'/ }); run down.sh first"
    exit 1
  fi
  _up_ok=0
  trap _up_on_exit EXIT
}

_up_on_exit() {
  local rc=$? f
  [[ $_up_ok == 1 ]] && return 0
  echo "[$LOG_PREFIX] FAILED (exit $rc); last lines of the logs:" >&2
  for f in "$state/logs/$service"*.log; do
    [[ -f $f ]] || continue
    echo "----- $f -----" >&2
    tail -n 40 "$f" >&2 || true
  done
  "$services_dir/down.sh" "$state" "$service" >&2 || true
  env_drop "$state" "TAILWARDEN_${service^^}" || true
  exit 1
}

# up_done: disarm the failure handler.
up_done() { _up_ok=1; }

# start_jvm LOGFILE [WRAPPER...] java JAVA_ARGS...: the JVM in the background in $state/$service (so
# that files a server writes relative to its working directory stay in the state dir), stdio
# detached from the caller (a caller that captures the script's output would otherwise hang); pid
# in $state/pids/$service.pid. A WRAPPER must exec the JVM (same pid). JAVA_ARGS must carry
# -Dtailwarden.dir=$state -Dtailwarden.service=$service (see our_jvm).
start_jvm() {
  local logfile=$1
  shift
  mkdir -p "$state/pids" "$state/$service"
  (cd "$state/$service" && exec "$@") </dev/null >"$logfile" 2>&1 &
  jvm_pid=$!
  echo "$jvm_pid" >"$state/pids/$service.pid"
  # Until the subshell (and any WRAPPER) has exec'd java, the pid is not recognisably ours yet.
  local deadline=$((SECONDS + 10))
  until our_jvm "$jvm_pid" "$state" "$service"; do
    alive "$jvm_pid" || die "$service exited at once; see $logfile"
    ((SECONDS < deadline)) || die "$service (pid $jvm_pid) did not exec java within 10 s"
    sleep 0.05
  done
}

# alive PID: PID exists and is not a zombie.
alive() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && ${st%% *} != Z ]]
}

# wait_for WHAT CMD...: poll CMD (quietly) until it succeeds; fail as soon as the JVM ($jvm_pid)
# is gone, or after $timeout seconds.
# shellcheck disable=SC2154  # timeout: set by the caller
wait_for() {
  local what=$1 deadline=$((SECONDS + timeout))
  shift
  until "$@" >/dev/null 2>&1; do
    our_jvm "$jvm_pid" "$state" "$service" || die "$service (pid $jvm_pid) exited while waiting for $what"
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
  log "ready: $what"
}

# log_has FILE TEXT: FILE contains TEXT (fixed string).
log_has() { grep -qF -- "$2" "$1"; }

# --- the clients in tools/ (compiled by build.sh) ------------------------------------------------
# Short-lived JVMs: C1 only and a serial GC start fastest; their logs go to stderr at WARN.

# kafka_tool BOOTSTRAP COMMAND ARGS...: tools/KafkaTool.java (see there).
kafka_tool() {
  java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    "-Dlog4j2.configurationFile=$services_dir/conf/kafka-log4j2.xml" -Dtailwarden.log.level=WARN \
    -cp "$svc/tools/kafka:$svc/kafka/lib/*" KafkaTool "$@"
}

# cql_tool [-w SECONDS] HOST:PORT [STATEMENT...]: tools/CqlTool.java (see there); credentials from
# TAILWARDEN_CASSANDRA_USER / TAILWARDEN_CASSANDRA_PASSWORD.
cql_tool() {
  java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    "-Dlogback.configurationFile=$services_dir/conf/cassandra-logback.xml" -Dtailwarden.log.level=WARN \
    -cp "$svc/tools/cql:$svc/cassandra/lib/*" CqlTool "$@"
}
