#!/usr/bin/env bash
# up.sh STATE_DIR: start a local Kubernetes v1.34 control plane on 127.0.0.1
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok with
# two fake nodes, a default StorageClass and a pool of static PVs).
#
# Writes STATE_DIR/kubeconfig, STATE_DIR/env, STATE_DIR/logs/*.log,
# STATE_DIR/pids/*.pid. Stop it with down.sh STATE_DIR.
# On any failure: prints the tail of every log, stops what it started, exits 1.
#
# Tunables (environment):
#   TAILWARDEN_CACHE        binaries come from $TAILWARDEN_CACHE/bin (build.sh)
#   TAILWARDEN_SKIP_BUILD=1 do not call build.sh (it is a ~0.1 s no-op when warm)
#   TAILWARDEN_PV_COUNT     static PVs to create (default 64)
#   TAILWARDEN_UP_TIMEOUT   seconds allowed for each wait (default 60)
#   TAILWARDEN_APISERVER_ARGS  extra kube-apiserver flags (split on spaces),
#                           e.g. "--feature-gates=... --audit-log-path=..."
#   TAILWARDEN_REAL_NODE=1  also join one real node (kubelet, containerd, kube-proxy; needs root):
#                           node-up.sh. The apiserver then also listens on this machine's own
#                           address, which the kubernetes Service points at, so pods reach it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
bin=$cache/bin
pv_count=${TAILWARDEN_PV_COUNT:-64}
timeout=${TAILWARDEN_UP_TIMEOUT:-60}
node_count=2

if [[ $# -ne 1 || -z $1 ]]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
mkdir -p "$1"
state=$(cd "$1" && pwd)
pki=$state/pki
logs=$state/logs
pids=$state/pids

t_start=$(date +%s.%N)
log() {
  awk -v a="$t_start" -v b="$(date +%s.%N)" -v m="$*" 'BEGIN { printf "[up.sh +%5.1fs] %s\n", b - a, m }' >&2
}

# --- failure handling -------------------------------------------------------
ok=0
on_exit() {
  local rc=$?
  [[ $ok == 1 ]] && return 0
  echo "[up.sh] FAILED (exit $rc); last lines of each log:" >&2
  local f
  for f in "$logs"/*.log; do
    [[ -f $f ]] || continue
    echo "----- $f -----" >&2
    tail -n 25 "$f" >&2 || true
  done
  "$here/down.sh" "$state" >&2 || true
  exit 1
}
trap on_exit EXIT

die() { echo "[up.sh] ERROR: $*" >&2; exit 1; }

# Refuse to start over a running cluster (its ports/pids would be lost). A pid
# counts only if it still runs the binary named by its pid file (as in down.sh).
if compgen -G "$pids/*.pid" >/dev/null; then
  for f in "$pids"/*.pid; do
    exe=$(readlink "/proc/$(cat "$f")/exe" 2>/dev/null || true)
    if [[ -n $exe && $(basename "${exe% (deleted)}") == "$(basename "$f" .pid)" ]]; then
      ok=1  # do not tear down the cluster that is already running
      die "a cluster is already running in $state (pid file $f); run down.sh first"
    fi
  done
fi

# --- binaries ---------------------------------------------------------------
if [[ ${TAILWARDEN_SKIP_BUILD:-0} != 1 ]]; then
  "$here/build.sh"
fi
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
  [[ -x $bin/$b ]] || die "$bin/$b missing; run tests/cluster/build.sh"
done
command -v etcd >/dev/null || die "etcd not on PATH; run tests/cluster/build.sh"
command -v openssl >/dev/null || die "openssl not on PATH"
command -v python3 >/dev/null || die "python3 not on PATH (used to pick free ports)"
kubectl=$bin/kubectl

# Fresh state every time: old etcd data or certs would not match new ports/keys.
rm -rf "$state/etcd" "$pki" "$logs" "$pids" "$state/kubeconfig" "$state/env" \
  "$state"/*.kubeconfig "$state/manifests" "$state/kwok.yaml" "$state/audit-policy.yaml"
mkdir -p "$pki" "$logs" "$pids" "$state/manifests"

# --- free ports ---------------------------------------------------------------
# Random ports below the Linux ephemeral range (32768+), so that outgoing
# connections of other programs cannot grab them between this check and the
# bind; each one is verified bindable on 127.0.0.1 and all are distinct.
# shellcheck source=tests/lib/free-ports.sh
source "$here/../lib/free-ports.sh"
# shellcheck source=tests/lib/host-ip.sh
source "$here/../lib/host-ip.sh"
read -r etcd_port etcd_peer_port api_port kcm_port sched_port kwok_port < <(free_ports 6)
[[ -n ${kwok_port:-} ]] || die "could not pick free ports"
server=https://127.0.0.1:$api_port
real_node=${TAILWARDEN_REAL_NODE:-0}
node_ip=127.0.0.1
if [[ $real_node == 1 ]]; then
  node_ip=$(host_ip)
  [[ -n $node_ip ]] || die "no non-loopback address for the real node"
fi
log "ports: etcd=$etcd_port/$etcd_peer_port apiserver=$api_port kcm=$kcm_port scheduler=$sched_port kwok=$kwok_port"

# --- PKI and tokens -------------------------------------------------------------
# ECDSA CA + serving cert (fast to generate); RSA service-account key pair.
(
  cd "$pki"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -subj "/CN=tailwarden-test-ca" -days 3650 -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out serving.key 2>/dev/null
  openssl req -new -key serving.key -subj "/CN=kube-apiserver" -out serving.csr 2>/dev/null
  cat >serving.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$node_ip,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
  openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile serving.ext -out serving.crt 2>/dev/null
  # Separate CA for the request-header (front-proxy) authenticator: without
  # one, kcm/scheduler log "missing content for CA bundle" endlessly.
  openssl ecparam -name prime256v1 -genkey -noout -out front-proxy-ca.key 2>/dev/null
  openssl req -x509 -new -key front-proxy-ca.key -subj "/CN=tailwarden-front-proxy-ca" -days 3650 \
    -out front-proxy-ca.crt -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  # The apiserver's client certificate towards kubelets (kubectl logs/exec on the real node).
  openssl ecparam -name prime256v1 -genkey -noout -out kubelet-client.key 2>/dev/null
  openssl req -new -key kubelet-client.key -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -out kubelet-client.csr 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >kubelet-client.ext
  openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile kubelet-client.ext -out kubelet-client.crt 2>/dev/null
  rm -f serving.csr serving.ext ca.srl kubelet-client.csr kubelet-client.ext
  chmod 600 ./*.key
)

token() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
admin_token=$(token)
kcm_token=$(token)
sched_token=$(token)
kwok_token=$(token)
# token,user,uid[,groups]. kcm and scheduler use the identities that the
# bootstrap RBAC policy grants their permissions to, as on a real cluster.
cat >"$pki/tokens.csv" <<EOF
$admin_token,admin,admin,system:masters
$kcm_token,system:kube-controller-manager,kube-controller-manager
$sched_token,system:kube-scheduler,kube-scheduler
$kwok_token,kwok,kwok,system:masters
EOF
chmod 600 "$pki/tokens.csv"

# write_kubeconfig FILE USER TOKEN
write_kubeconfig() {
  local ca_data
  ca_data=$(base64 -w0 <"$pki/ca.crt")
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tailwarden
  cluster:
    server: $server
    certificate-authority-data: $ca_data
users:
- name: $2
  user:
    token: $3
contexts:
- name: tailwarden
  context:
    cluster: tailwarden
    user: $2
    namespace: default
current-context: tailwarden
EOF
  chmod 600 "$1"
}
write_kubeconfig "$state/kubeconfig" admin "$admin_token"
write_kubeconfig "$state/kcm.kubeconfig" system:kube-controller-manager "$kcm_token"
write_kubeconfig "$state/scheduler.kubeconfig" system:kube-scheduler "$sched_token"
write_kubeconfig "$state/kwok.kubeconfig" kwok "$kwok_token"
export KUBECONFIG=$state/kubeconfig

# --- process helpers ------------------------------------------------------------
# start NAME CMD...: run in the background, stdio detached (so callers that
# capture up.sh's output do not hang), pid in pids/NAME.pid.
start() {
  local name=$1
  shift
  "$@" </dev/null >"$logs/$name.log" 2>&1 &
  echo $! >"$pids/$name.pid"
}

# Fail fast when a component exits instead of waiting for the timeout.
check_alive() {
  local f
  for f in "$pids"/*.pid; do
    kill -0 "$(cat "$f")" 2>/dev/null || die "$(basename "$f" .pid) exited; see $logs/$(basename "$f" .pid).log"
  done
}

# wait_for DESCRIPTION CMD...: poll CMD (quietly) until it succeeds, with a deadline.
wait_for() {
  local what=$1 deadline=$((SECONDS + timeout))
  shift
  until "$@" >/dev/null 2>&1; do
    check_alive
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
  log "ready: $what"
}

# healthz PORT: a component's /healthz over TLS (serving cert signed by our
# CA). The admin token goes through the component's delegated authentication
# (TokenReview); without any credentials kubectl would prompt for a password.
healthz() {
  "$kubectl" --kubeconfig=/dev/null --server="https://127.0.0.1:$1" \
    --certificate-authority="$pki/ca.crt" --token="$admin_token" get --raw /healthz </dev/null
}

# One list call (kubectl wait would watch the PVs one by one, ~0.1 s each).
pvs_available() {
  local phases
  phases=$("$kubectl" get pv -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}')
  [[ $(grep -cx Available <<<"$phases") -eq $pv_count ]]
}

# --- etcd + kube-apiserver ------------------------------------------------------
start etcd etcd --name tailwarden --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "tailwarden=http://127.0.0.1:$etcd_peer_port" --initial-cluster-state new \
  --quota-backend-bytes $((2 * 1024 * 1024 * 1024))

# The apiserver retries etcd itself, so no need to wait for etcd first.
# --feature-gates=WatchList=false: with WatchList on (the 1.34 default) the
# apiserver turns every watch from resourceVersion ""/"0" with bookmarks into
# a watch-list stream, which needs etcd's RequestWatchProgress; Debian's etcd
# 3.4 lacks it, so such watches failed at once. kwok always watches from "0":
# its caches went stale and every other node-lease renewal hit a conflict.
read -r -a extra_api_args <<<"${TAILWARDEN_APISERVER_ARGS:-}"
# With a real node, pods reach the apiserver through the kubernetes Service, whose endpoint is
# this machine's own address (the lease reconciler publishes it).
if [[ $real_node == 1 ]]; then
  extra_api_args+=(--bind-address=0.0.0.0 --advertise-address="$node_ip" --endpoint-reconciler-type=lease)
else
  extra_api_args+=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
fi
# Audit log of ServiceAccount requests (Metadata level: who, verb, resource, response code and the
# authorization decision; no bodies), for tests that compare what a component calls with what its
# RBAC grants (tests/tests/rbac.rs). kcm's controllers (kube-system ServiceAccounts), the
# components' own users and the admin are not logged, so the file stays small.
cat >"$state/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
EOF
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --secure-port="$api_port" \
  --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
  --client-ca-file="$pki/ca.crt" \
  --requestheader-client-ca-file="$pki/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=RBAC \
  --token-auth-file="$pki/tokens.csv" \
  --kubelet-client-certificate="$pki/kubelet-client.crt" --kubelet-client-key="$pki/kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --enable-admission-plugins=PodNodeSelector,PodTolerationRestriction \
  --feature-gates=WatchList=false \
  --allow-privileged=true \
  --profiling=false \
  --cert-dir="$pki/apiserver" \
  --audit-policy-file="$state/audit-policy.yaml" \
  --audit-log-path="$logs/audit.log" --audit-log-format=json --audit-log-mode=blocking \
  --audit-log-maxsize=0 \
  "${extra_api_args[@]}"

wait_for "kube-apiserver /readyz" "$kubectl" get --raw /readyz

# --- kube-controller-manager, kube-scheduler, kwok ------------------------------------
# All default controllers ("*": garbage collector, deployment, replicaset,
# statefulset, serviceaccount, serviceaccount-token, PV binder, ...), each
# with its own ServiceAccount credentials like kubeadm clusters.
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig="$state/kcm.kubeconfig" \
  --authentication-kubeconfig="$state/kcm.kubeconfig" --authorization-kubeconfig="$state/kcm.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$kcm_port" \
  --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
  --leader-elect=false \
  --controllers='*' \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$pki/sa.key" \
  --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --profiling=false

start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig="$state/scheduler.kubeconfig" \
  --authentication-kubeconfig="$state/scheduler.kubeconfig" --authorization-kubeconfig="$state/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$sched_port" \
  --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
  --leader-elect=false \
  --profiling=false

# The kwok binary has no built-in stages: build.sh extracts kwok's default
# "fast" stages (node-initialize, node-heartbeat-with-lease, pod-ready,
# pod-complete, pod-delete: the set kwokctl uses) into bin/kwok-stages.yaml.
cp "$bin/kwok-stages.yaml" "$state/kwok.yaml"
start kwok "$bin/kwok" \
  --kubeconfig="$state/kwok.kubeconfig" \
  --config="$state/kwok.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 \
  --cidr=10.244.0.0/16 \
  --server-address="127.0.0.1:$kwok_port"

# --- cluster objects: fake nodes, default StorageClass, static PVs -----------------------
manifest=$state/manifests/cluster.yaml
{
  for ((i = 0; i < node_count; i++)); do
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: tailwarden-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: tailwarden-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-$i
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
---
EOF
  done
  cat <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
---
EOF
  for ((i = 0; i < pv_count; i++)); do
    cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: tailwarden-pv-$(printf '%03d' "$i")
spec:
  storageClassName: standard
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: "$state/volumes/pv-$(printf '%03d' "$i")"}
---
EOF
  done
} >"$manifest"
# Pods on the real node run as non-root users, and hostPath volumes ignore fsGroup.
for ((i = 0; i < pv_count; i++)); do
  install -d -m 1777 "$state/volumes/pv-$(printf '%03d' "$i")"
done
"$kubectl" create -f "$manifest" >"$logs/objects.log" 2>&1 || die "creating nodes/StorageClass/PVs failed (see $logs/objects.log)"
log "created $node_count nodes, StorageClass standard, $pv_count PVs"

# --- readiness --------------------------------------------------------------------
wait_for "kube-controller-manager /healthz" healthz "$kcm_port"
wait_for "kube-scheduler /healthz" healthz "$sched_port"
# The serviceaccount controller creating default/default proves kcm works.
wait_for "ServiceAccount default/default" "$kubectl" -n default get serviceaccount default
wait_for "$node_count nodes Ready" "$kubectl" wait --for=condition=Ready node --all --timeout=2s
wait_for "$pv_count PVs Available" pvs_available

# --- env file -------------------------------------------------------------------------
{
  echo "# Generated by tests/cluster/up.sh; source it: . $state/env"
  for kv in \
    "KUBECONFIG=$state/kubeconfig" \
    "TAILWARDEN_APISERVER=$server" \
    "TAILWARDEN_STATE_DIR=$state" \
    "TAILWARDEN_BIN=$bin" \
    "TAILWARDEN_KUBECTL=$kubectl" \
    "TAILWARDEN_ADMIN_TOKEN=$admin_token" \
    "TAILWARDEN_CA_CERT=$pki/ca.crt" \
    "TAILWARDEN_CA_KEY=$pki/ca.key" \
    "TAILWARDEN_SA_SIGNING_KEY=$pki/sa.key" \
    "TAILWARDEN_SA_PUBLIC_KEY=$pki/sa.pub" \
    "TAILWARDEN_SA_ISSUER=https://kubernetes.default.svc" \
    "TAILWARDEN_ETCD_PORT=$etcd_port" \
    "TAILWARDEN_ETCD_PEER_PORT=$etcd_peer_port" \
    "TAILWARDEN_APISERVER_PORT=$api_port" \
    "TAILWARDEN_KCM_PORT=$kcm_port" \
    "TAILWARDEN_SCHEDULER_PORT=$sched_port" \
    "TAILWARDEN_KWOK_PORT=$kwok_port" \
    "TAILWARDEN_PV_COUNT=$pv_count" \
    "TAILWARDEN_AUDIT_LOG=$logs/audit.log"; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
} >"$state/env"

if [[ $real_node == 1 ]]; then
  "$here/node-up.sh" "$state" || die "the real node did not come up"
  log "real node ready"
fi

ok=1
log "cluster up: $server (. $state/env)"
