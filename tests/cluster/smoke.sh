#!/usr/bin/env bash
# smoke.sh [STATE_DIR]: end-to-end check of the harness.
# up.sh -> a Deployment (2 replicas) and a StatefulSet (1 replica with a
# volumeClaimTemplate) become fully Ready -> deleting the Deployment (default,
# background propagation) makes the garbage collector delete its ReplicaSet
# and Pods -> down.sh. Uses the kubectl built by build.sh, never the system one.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${1:-$(mktemp -d "${TMPDIR:-/tmp}/tailwarden-smoke.XXXXXX")}
wait_s=${TAILWARDEN_SMOKE_TIMEOUT:-90}
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

t0=$SECONDS
"$here/up.sh" "$state"
pass "up.sh ($((SECONDS - t0)) s)"
# shellcheck source=/dev/null
. "$state/env"
k() { "$TAILWARDEN_KUBECTL" "$@"; }

k apply -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: smoke-web
spec:
  replicas: 2
  selector:
    matchLabels: {app: smoke-web}
  template:
    metadata:
      labels: {app: smoke-web}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/pause:3.10
---
apiVersion: v1
kind: Service
metadata:
  name: smoke-db
spec:
  clusterIP: None
  selector: {app: smoke-db}
  ports:
  - port: 5432
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: smoke-db
spec:
  serviceName: smoke-db
  replicas: 1
  selector:
    matchLabels: {app: smoke-db}
  template:
    metadata:
      labels: {app: smoke-db}
    spec:
      containers:
      - name: db
        image: registry.k8s.io/pause:3.10
        volumeMounts:
        - {name: data, mountPath: /data}
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Gi}
EOF

k wait --for=jsonpath='{.status.readyReplicas}'=2 deployment/smoke-web --timeout="${wait_s}s"
pass "Deployment smoke-web readyReplicas=2"
k wait --for=jsonpath='{.status.phase}'=Bound pvc/data-smoke-db-0 --timeout="${wait_s}s"
pass "PVC data-smoke-db-0 Bound to $(k get pvc data-smoke-db-0 -o jsonpath='{.spec.volumeName}')"
k wait --for=jsonpath='{.status.readyReplicas}'=1 statefulset/smoke-db --timeout="${wait_s}s"
pass "StatefulSet smoke-db readyReplicas=1"

mapfile -t rs < <(k get replicaset -l app=smoke-web -o name)
mapfile -t pods < <(k get pod -l app=smoke-web -o name)
((${#rs[@]} == 1 && ${#pods[@]} == 2)) || {
  echo "[smoke] expected 1 ReplicaSet and 2 Pods, got: ${rs[*]} / ${pods[*]}" >&2
  exit 1
}

# Default propagation for `kubectl delete` is background: the Deployment goes
# at once and the garbage collector must remove the dependents.
k delete deployment smoke-web --wait=true
k wait --for=delete "${rs[@]}" --timeout="${wait_s}s"
pass "garbage collector deleted ${rs[*]}"
k wait --for=delete "${pods[@]}" --timeout="${wait_s}s"
pass "garbage collector deleted ${pods[*]}"

mapfile -t procs < <(cat "$state"/pids/*.pid)
t1=$SECONDS
"$here/down.sh" "$state"
for pid in "${procs[@]}"; do
  # /proc/PID/exe is unreadable once a process is gone (or a zombie).
  if readlink "/proc/$pid/exe" >/dev/null 2>&1; then
    echo "[smoke] process $pid still running after down.sh" >&2
    exit 1
  fi
done
"$here/down.sh" "$state"   # idempotent: a second call must succeed too
pass "down.sh ($((SECONDS - t1)) s)"
trap - EXIT
echo "$passed passed, 0 failed"
