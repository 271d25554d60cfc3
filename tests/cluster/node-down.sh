#!/usr/bin/env bash
# node-down.sh STATE_DIR: stop the real node that node-up.sh started in STATE_DIR and undo every
# host-wide change it made (the list in ../shared/notes/real-node.md), also after a failed test or a
# crashed harness. Idempotent; does nothing when STATE_DIR never had a real node. Fails, naming
# them, if any of those changes are still there afterwards.
set -uo pipefail

state=${1:?usage: node-down.sh STATE_DIR}
node=$state/node
pids=$state/pids
marker=/run/tailwarden-real-node
bin=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}/bin
[[ -d $node ]] || exit 0

# stop NAME: SIGTERM, then SIGKILL after 10 s, if the pid still runs that program.
stop() {
  local f=$pids/$1.pid pid exe
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || { rm -f "$f"; return 0; }
  [[ $(basename "${exe% (deleted)}") == "$1" ]] || { rm -f "$f"; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  rm -f "$f"
}

# The kubelet first, so that it does not restart what is killed below.
stop kubelet
stop kube-proxy

# Every container process and shim: they live in the /kubepods cgroups (containers) or were
# started for this containerd's socket (shims).
for hierarchy in /sys/fs/cgroup/*/; do
  [[ -d $hierarchy/kubepods ]] || continue
  find "$hierarchy/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
done
pgrep -f "containerd-shim-runc-v2 .*-address $node/" | xargs -r kill -KILL 2>/dev/null
stop containerd

# Mounts under the node directory (container root filesystems, pod volumes, the kubelet's bind
# mount of its root dir onto itself), deepest first.
awk -v p="$node/" 'index($2, p) == 1 || $2 == substr(p, 1, length(p) - 1) { print $2 }' /proc/mounts \
  | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
awk -v p="$node/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r \
  | while read -r m; do umount -l "$m" 2>/dev/null; done

# cgroups, deepest first, in every hierarchy: a cgroup can be removed once its killed processes
# are gone, which takes a moment.
for _ in $(seq 50); do
  busy=0
  for hierarchy in /sys/fs/cgroup/*/; do
    [[ -d $hierarchy/kubepods ]] || continue
    find "$hierarchy/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    find "$hierarchy/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
    [[ -d $hierarchy/kubepods ]] && busy=1
  done
  ((busy)) || break
  sleep 0.1
done

# Network: pod network namespaces, the bridge, kube-proxy's iptables chains, ip_forward.
for ns in /run/netns/cni-*; do
  [[ -e $ns ]] || continue
  ip netns delete "$(basename "$ns")" 2>/dev/null || { umount -l "$ns" 2>/dev/null; rm -f "$ns"; }
done
ip link delete tw-cni0 2>/dev/null
if [[ -x $bin/kube-proxy ]]; then
  "$bin/kube-proxy" --cleanup >/dev/null 2>&1
fi
# What kube-proxy's cleanup leaves: the kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
# KUBE-IPTABLES-HINT), IPv4 and IPv6. Jumps into KUBE-* chains first, then the chains.
for cmd in iptables ip6tables; do
  command -v "$cmd" >/dev/null || continue
  for table in filter nat mangle; do
    "$cmd" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' \
      | while read -r rule; do
          # iptables -S quotes comments the way a shell reads them.
          eval "$cmd -t $table ${rule/#-A/-D}" 2>/dev/null
        done
    for chain in $("$cmd" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p'); do
      "$cmd" -t "$table" -F "$chain" 2>/dev/null
    done
    for chain in $("$cmd" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p'); do
      "$cmd" -t "$table" -X "$chain" 2>/dev/null
    done
  done
done
if [[ -f $node/ip_forward.orig ]]; then
  cat "$node/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward
  rm -f "$node/ip_forward.orig"
fi
rm -rf /var/lib/cni/results/tailwarden-* /var/lib/cni/networks/tailwarden

# Files at fixed host paths: shim and runc state of the k8s.io namespace, the device-plugin socket,
# the container log symlinks into our pod log dir.
rm -rf /run/containerd/runc/k8s.io /run/containerd/io.containerd.runtime.v2.task/k8s.io
find /run/containerd/s /run/containerd/fifo -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null
rm -f /var/lib/kubelet/device-plugins/kubelet.sock
find /var/log/containers -maxdepth 1 -type l -lname "$node/*" -delete 2>/dev/null

if [[ -f $marker && $(cat "$marker") == "$state" ]]; then
  rm -f "$marker"
fi

# Verify: name whatever is left, and fail, so that a run that leaks onto the host is seen.
left=()
for p in kubelet kube-proxy containerd; do
  [[ -f $pids/$p.pid ]] && kill -0 "$(cat "$pids/$p.pid")" 2>/dev/null && left+=("process $p")
done
pgrep -f "containerd-shim-runc-v2 .*-address $node/" >/dev/null && left+=("containerd shims")
compgen -G "/run/netns/cni-*" >/dev/null && left+=("/run/netns/cni-*")
ip link show tw-cni0 >/dev/null 2>&1 && left+=("link tw-cni0")
for cmd in iptables ip6tables; do
  command -v "$cmd" >/dev/null || continue
  for table in filter nat mangle; do
    "$cmd" -t "$table" -S 2>/dev/null | grep -q -- '-N KUBE-' && left+=("$cmd -t $table KUBE-* chains")
  done
done
for hierarchy in /sys/fs/cgroup/*/; do
  [[ -d $hierarchy/kubepods ]] && left+=("cgroup ${hierarchy}kubepods")
done
awk -v p="$node" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/mounts && left+=("mounts under $node")
[[ -e /var/lib/kubelet/device-plugins/kubelet.sock ]] && left+=("/var/lib/kubelet/device-plugins/kubelet.sock")
if ((${#left[@]})); then
  printf '[node-down.sh] left on the host: %s\n' "${left[@]}" >&2
  exit 1
fi
exit 0
