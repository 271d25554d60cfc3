#!/usr/bin/env bash
# Installs Debian's `prometheus` package (it ships `prometheus` and `promtool`) unless promtool is
# already on the PATH. Idempotent; needs root, as on CI. The package's post-install step may try to
# start a service; without systemd that fails harmlessly, and the tests start their own servers.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install.sh: promtool is missing and installing it needs root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# policy-rc.d exit 101 tells invoke-rc.d not to start services during the install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
rc=0
apt-get install -y -q --no-install-recommends prometheus || rc=$?
if [[ $created_policy -eq 1 ]]; then
  rm -f "$policy"
fi
if [[ $rc -ne 0 ]]; then
  exit "$rc"
fi
command -v promtool >/dev/null 2>&1 || { echo "install.sh: prometheus installed but promtool not found" >&2; exit 1; }
promtool --version | head -n 1
