#!/usr/bin/env bash
# Builds dashboard-check (main.go here), which reads the Grafana dashboards into the Grafana
# Foundation SDK's dashboard model (github.com/grafana/grafana-foundation-sdk/go, pinned in
# go.mod/go.sum) with unknown fields refused. tests/tests/dashboards.rs runs it.
#
# Everything goes under ${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}, shared with the other Go
# tools of the tests: bin/dashboard-check (+ bin/.dashboard-check-stamp), and the Go caches.
# Skips the build when the stamp matches the hash of the inputs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_PREFIX=dashboards/build.sh
# shellcheck source=tests/lib/go-build.sh
source "$here/../lib/go-build.sh"
stamp=$bin/.dashboard-check-stamp

inputs_hash() {
  (cd "$here" && cat go.mod go.sum main.go build.sh ../lib/go-build.sh) | sha256sum | cut -d' ' -f1
}

build() {
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$bin/dashboard-check.tmp" .)
  mv "$bin/dashboard-check.tmp" "$bin/dashboard-check"
}

main() {
  local want
  go_env
  want=$(inputs_hash)
  if [[ -x $bin/dashboard-check && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    log "dashboard-check up to date in $bin"
    return
  fi
  command -v go >/dev/null 2>&1 || { log "go not found (need Go >= 1.26)"; exit 1; }
  rm -f "$stamp"
  step "go mod download" bash -c "cd '$here' && go mod download"
  step "go build dashboard-check" build
  echo "$want" >"$stamp"
}

main "$@"
