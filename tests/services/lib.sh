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

# free_ports N: N distinct random ports in 20000-31999 (below the Linux ephemeral range, so other
# programs' outgoing connections cannot take them between this check and the bind), each verified
# bindable on 127.0.0.1. Same scheme as tests/cluster/up.sh.
free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
held, ports = [], []
while len(ports) < n:
    p = random.randrange(20000, 32000)
    if p in ports:
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    held.append(s)
    ports.append(p)
print(*ports)
for s in held:
    s.close()
EOF
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
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
  local d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    our_jvm "$pid" "$1" "${2:-}" && echo "$pid"
  done
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

# java_ok: a JDK (java and javac) of version 17 or newer is on the PATH.
java_ok() {
  command -v java >/dev/null && command -v javac >/dev/null || return 1
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} >= 17))
}
