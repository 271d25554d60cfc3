#!/usr/bin/env bash
# What the status-page browser test needs: Debian's Chromium, and axe-core from npm in the cache
# (never in the repository): $TAILWARDEN_CACHE/axe/node_modules/axe-core/axe.min.js.
# Idempotent.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
"$here/../debian-install.sh" chromium chromium
# Node.js (20+, for its WebSocket) and npm are the machine's own.
axe=$cache/axe
if [[ ! -f $axe/node_modules/axe-core/axe.min.js ]]; then
  mkdir -p "$axe"
  npm install --prefix "$axe" --no-audit --no-fund --no-save axe-core@4
fi
