#!/usr/bin/env bash
# node-up.sh STATE_DIR: join one real node to the cluster that up.sh started in STATE_DIR:
# containerd (Debian's) with its own config, socket and state, kubelet and kube-proxy v1.34.10
# (built by build.sh), the CNI bridge plugin on a private pod subnet, and a pause image built here
# from tests/cluster/node/pause.c. Imports our images (scripts/build-images.sh, from the debug
# binaries in $CARGO_TARGET_DIR) so that pods can run them without a registry.
#
# The node is tainted tailwarden.io/real-node=true:NoSchedule and labelled tailwarden.io/node=real;
# a namespace chooses it with the annotations that `real_node_namespace` in
# tests/src/real_node.rs sets (PodNodeSelector and PodTolerationRestriction are enabled), so the
# kwok tests never land on it.
#
# Facts this follows: ../shared/notes/real-node.md. Host-wide changes (ports 10250/10248/10249/
# 10256, /run/containerd, /run/netns, iptables, ip_forward, /kubepods cgroups, ...) are undone
# by node-down.sh; one real node per machine, marked by /run/tailwarden-real-node. A node left by a
# crashed run is torn down first.
#
# Needs root. Called by up.sh when TAILWARDEN_REAL_NODE=1; appends to STATE_DIR/env.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
state=$(cd "$1" && pwd)
# shellcheck disable=SC1091
source "$state/env"
cache=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
bin=$cache/bin
node=$state/node
pki=$state/pki
logs=$state/logs
pids=$state/pids
marker=/run/tailwarden-real-node
name=tailwarden-real-node
pod_cidr=10.89.0.0/24
bridge=tw-cni0
timeout=${TAILWARDEN_UP_TIMEOUT:-60}
kubectl=$bin/kubectl

log() { printf '[node-up.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "a real node needs root"
"$root/tests/debian-install.sh" containerd containerd runc containernetworking-plugins
"$root/tests/debian-install.sh" gcc gcc libc6-dev
[[ -x /usr/lib/cni/bridge ]] || "$root/tests/debian-install.sh" /usr/lib/cni/bridge containernetworking-plugins
for b in kubelet kube-proxy; do
  [[ -x $bin/$b ]] || die "$bin/$b missing; run tests/cluster/build.sh"
done

# --- one node per machine --------------------------------------------------------------------
if [[ -f $marker ]]; then
  other=$(cat "$marker")
  if [[ $other != "$state" && -f $other/pids/kubelet.pid ]] && kill -0 "$(cat "$other/pids/kubelet.pid")" 2>/dev/null; then
    die "a real node of another cluster runs ($other); stop it with tests/cluster/down.sh $other"
  fi
  log "removing what a previous run left behind ($other)"
  "$here/node-down.sh" "$other" || true
fi
echo "$state" >"$marker"

# shellcheck source=tests/lib/host-ip.sh
source "$here/../lib/host-ip.sh"
node_ip=$(host_ip)
[[ -n $node_ip ]] || die "no non-loopback address for the node (ip -4 route get)"

rm -rf "$node"
mkdir -p "$node"/{containerd,cni,cni-ipam,kubelet/root,kubelet/pki,pod-logs,kube-proxy,images}
cat /proc/sys/net/ipv4/ip_forward >"$node/ip_forward.orig"

# --- certificates: kubelet, kube-proxy, and the apiserver's client to the kubelet --------------
# client_cert NAME CN ORG
client_cert() {
  openssl ecparam -name prime256v1 -genkey -noout -out "$node/$1.key" 2>/dev/null
  openssl req -new -key "$node/$1.key" -subj "/O=$3/CN=$2" -out "$node/$1.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$node/$1.ext"
  openssl x509 -req -in "$node/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$node/$1.ext" -out "$node/$1.crt" 2>/dev/null
  rm -f "$node/$1.csr" "$node/$1.ext" "$pki/ca.srl"
  chmod 600 "$node/$1.key"
}
client_cert kubelet "system:node:$name" system:nodes
client_cert kube-proxy system:kube-proxy system:node-proxier

# cert_kubeconfig FILE NAME
cert_kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tailwarden
  cluster: {server: "$TAILWARDEN_APISERVER", certificate-authority: "$pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$node/$2.crt", client-key: "$node/$2.key"}
contexts:
- name: tailwarden
  context: {cluster: tailwarden, user: $2}
current-context: tailwarden
EOF
  chmod 600 "$1"
}
cert_kubeconfig "$node/kubelet.kubeconfig" kubelet
cert_kubeconfig "$node/kube-proxy.kubeconfig" kube-proxy
# The test apiserver has no Node authorizer: grant the node its ClusterRole through RBAC.
"$kubectl" create clusterrolebinding tailwarden-real-node --clusterrole=system:node \
  --user="system:node:$name" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null

# --- images: pause (static C), operator and data plane -------------------------------------------
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/tailwarden/Chart.yaml")
gcc -static -O2 -s -o "$node/pause" "$here/node/pause.c"
python3 "$root/scripts/oci_image.py" "$node/pause" tailwarden-pause "$version" test 0 "$node/images" >/dev/null
PROFILE=debug SKIP_BUILD=1 "$root/scripts/build-images.sh" "$node/images" >"$logs/build-images.log" 2>&1 \
  || die "scripts/build-images.sh failed (needs cargo build's debug binaries); see $logs/build-images.log"

# --- containerd ---------------------------------------------------------------------------------------
sock=$node/containerd/containerd.sock
cat >"$node/containerd/config.toml" <<EOF
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/tailwarden/tailwarden-pause:$version"
  # Required here: this machine's processes lack CAP_SYS_RESOURCE (real-node.md).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni"
EOF
cat >"$node/cni/10-tailwarden.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "tailwarden",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$node/cni-ipam", "ranges": [[{"subnet": "$pod_cidr"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
}
EOF
containerd --config "$node/containerd/config.toml" </dev/null >"$logs/containerd.log" 2>&1 &
echo $! >"$pids/containerd.pid"
ctr() { command ctr --address "$sock" --namespace k8s.io "$@"; }
deadline=$((SECONDS + timeout))
until ctr version >/dev/null 2>&1; do
  ((SECONDS < deadline)) || die "containerd did not answer within ${timeout}s; see $logs/containerd.log"
  sleep 0.2
done
for archive in "$node"/images/*.oci.tar; do
  ctr images import "$archive" >/dev/null || die "ctr images import $archive failed"
done
log "containerd up; imported $(ctr images ls -q | grep -c tailwarden) images"

# --- kubelet ------------------------------------------------------------------------------------------
cat >"$node/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
address: $node_ip
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
podLogsDir: $node/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
# Imported images are the only ones there are: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
serializeImagePulls: false
registerWithTaints:
- {key: tailwarden.io/real-node, value: "true", effect: NoSchedule}
EOF
"$bin/kubelet" --config="$node/kubelet/config.yaml" --kubeconfig="$node/kubelet.kubeconfig" \
  --root-dir="$node/kubelet/root" --cert-dir="$node/kubelet/pki" \
  --hostname-override="$name" --node-ip="$node_ip" \
  --node-labels="tailwarden.io/node=real,type=real" \
  </dev/null >"$logs/kubelet.log" 2>&1 &
echo $! >"$pids/kubelet.pid"

# --- kube-proxy (iptables): ClusterIP Services from the host and from pods ------------------------------
cat >"$node/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $node/kube-proxy.kubeconfig}
hostnameOverride: $name
clusterCIDR: $pod_cidr
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0}
EOF
"$bin/kube-proxy" --config="$node/kube-proxy/config.yaml" </dev/null >"$logs/kube-proxy.log" 2>&1 &
echo $! >"$pids/kube-proxy.pid"

deadline=$((SECONDS + timeout))
until "$kubectl" wait --for=condition=Ready "node/$name" --timeout=2s >/dev/null 2>&1; do
  for p in containerd kubelet kube-proxy; do
    kill -0 "$(cat "$pids/$p.pid")" 2>/dev/null || die "$p exited; see $logs/$p.log"
  done
  ((SECONDS < deadline)) || die "node $name not Ready within ${timeout}s; see $logs/kubelet.log"
  sleep 0.5
done
cat >>"$state/env" <<EOF
export TAILWARDEN_REAL_NODE=$name
export TAILWARDEN_REAL_NODE_IP=$node_ip
export TAILWARDEN_CONTAINERD_SOCK=$sock
export TAILWARDEN_IMAGE_VERSION=$version
EOF
log "node $name Ready ($node_ip, pods in $pod_cidr)"
