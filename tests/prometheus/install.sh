#!/usr/bin/env bash
# Installs Debian's `prometheus` package (it ships `prometheus` and `promtool`) unless promtool is
# already on the PATH.
set -euo pipefail
"$(dirname "${BASH_SOURCE[0]}")/../debian-install.sh" promtool prometheus
promtool --version | head -n 1
