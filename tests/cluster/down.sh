#!/usr/bin/env bash
# down.sh STATE_DIR: stop what up.sh started in STATE_DIR (pids/*.pid).
# SIGTERM first, SIGKILL after a bounded wait. Idempotent: succeeds when
# nothing runs or STATE_DIR does not exist. Leaves logs and state for
# inspection (up.sh starts from a clean state anyway).
set -euo pipefail

if [[ $# -ne 1 || -z $1 ]]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
pids=$1/pids
grace=${TAILWARDEN_DOWN_GRACE:-10}   # seconds between SIGTERM and SIGKILL

[[ -d $pids ]] || exit 0

# The real node first (it talks to the apiserver), and its host-wide changes with it.
"$(dirname "${BASH_SOURCE[0]}")/node-down.sh" "$1"

# Only signal a pid if it still runs the program we started: after a reboot or
# a crash the number may belong to an unrelated process by now.
ours() {
  local pid=$1 name=$2 exe
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $(basename "${exe% (deleted)}") == "$name" ]]
}

# Stop clients before the servers they talk to (quieter logs, cleaner etcd).
order=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
live=()
for name in "${order[@]}"; do
  f=$pids/$name.pid
  [[ -f $f ]] || continue
  pid=$(cat "$f")
  if ours "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    live+=("$pid:$name")
  fi
done

deadline=$((SECONDS + grace))
for entry in "${live[@]}"; do
  pid=${entry%%:*}
  name=${entry#*:}
  while ours "$pid" "$name" && ((SECONDS < deadline)); do
    sleep 0.1
  done
  if ours "$pid" "$name"; then
    echo "[down.sh] $name ($pid) ignored SIGTERM for ${grace}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    kill_deadline=$((SECONDS + 5))
    while ours "$pid" "$name" && ((SECONDS < kill_deadline)); do
      sleep 0.1
    done
  fi
done

rm -f "$pids"/*.pid
