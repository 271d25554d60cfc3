#!/usr/bin/env bash
# Installs Debian packages unless a command they provide is already on the PATH.
# Usage: tests/debian-install.sh <command> <package>...
# Idempotent; needs root, as on CI. Post-install steps may try to start services: policy-rc.d
# (exit 101) tells invoke-rc.d not to, and the tests start their own servers.
set -euo pipefail
check=$1
shift
if command -v "$check" >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "debian-install.sh: $check is missing and installing $* needs root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
rc=0
apt-get install -y -q --no-install-recommends "$@" || rc=$?
if [[ $created_policy -eq 1 ]]; then
  rm -f "$policy"
fi
if [[ $rc -ne 0 ]]; then
  exit "$rc"
fi
command -v "$check" >/dev/null 2>&1 || { echo "debian-install.sh: $* installed but $check not found" >&2; exit 1; }
