# Shared by the build scripts of the test tools (tests/cluster/build.sh, tests/helm/build.sh):
# where the cache lives, timed steps, and a Go environment that keeps every cache outside the
# clone and treats the committed go.sum as the trust anchor. Source it after setting LOG_PREFIX.
# shellcheck shell=bash

cache=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
bin=$cache/bin

# Prefer the toolchain on PATH; fall back to the usual tarball location.
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  PATH=$PATH:/usr/local/go/bin
fi

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }

# step NAME CMD...: run a step and report its wall time.
step() {
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  log "$(awk -v n="$name" -v a="$start" -v b="$end" 'BEGIN { printf "%-34s %7.1fs", n, b - a }')"
}

# Module cache, build cache and GOPATH under the cache; go.sum is never rewritten.
go_env() {
  mkdir -p "$bin" "$cache/go"
  export GOPATH=$cache/go/path GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build
  export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly" GOTOOLCHAIN=local
}
