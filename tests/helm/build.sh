#!/usr/bin/env bash
# Builds the helm CLI (helm.sh/helm/v3, pinned in go.mod/go.sum here) that the chart tests use for
# `helm lint` and `helm template` of charts/tailwarden.
#
# Everything goes under ${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}, shared with
# tests/cluster/build.sh:
#   bin/helm (+ bin/.helm-stamp)
#   go/mod go/build go/path   Go module cache, build cache and GOPATH
# Nothing is written into the repository.
#
# Skips the build when bin/.helm-stamp matches the hash of go.mod, go.sum, tools.go and this
# script, so a warm call costs well under a second.
set -euo pipefail

HELM_VERSION=v3.22.0   # must match helm.sh/helm/v3 in go.mod

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_PREFIX=helm/build.sh
# shellcheck source=tests/lib/go-build.sh
source "$here/../lib/go-build.sh"
stamp=$bin/.helm-stamp

inputs_hash() {
  (cd "$here" && cat go.mod go.sum tools.go build.sh ../lib/go-build.sh) | sha256sum | cut -d' ' -f1
}

build_helm() {
  local k8s major minor pkg x=()
  # What helm's Makefile does: the default Kubernetes version of `helm template` and of the lint
  # rules is one major above the client-go module version (v0.37 -> 1.37).
  k8s=$(cd "$here" && go list -f '{{.Version}}' -m k8s.io/client-go)
  k8s=${k8s#v}
  major=$(( ${k8s%%.*} + 1 ))
  minor=${k8s#*.}; minor=${minor%%.*}
  x+=("-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
      "-X helm.sh/helm/v3/internal/version.gitTreeState=clean")
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    x+=("-X $pkg.k8sVersionMajor=$major" "-X $pkg.k8sVersionMinor=$minor")
  done
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w ${x[*]}" \
     -o "$bin/helm.tmp" helm.sh/helm/v3/cmd/helm)
  mv "$bin/helm.tmp" "$bin/helm"
}

main() {
  local t0 want
  t0=$(date +%s.%N)
  go_env

  want=$(inputs_hash)
  if [[ -x $bin/helm && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    log "helm up to date in $bin (stamp $want)"
  else
    command -v go >/dev/null 2>&1 || { log "go not found (need Go >= 1.26)"; exit 1; }
    rm -f "$stamp"
    step "go mod download" bash -c "cd '$here' && go mod download"
    step "go build helm ($HELM_VERSION)" build_helm
    echo "$want" >"$stamp"
  fi
  log "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%-28s %7.1fs", "total", b - a }')"
}

main "$@"
