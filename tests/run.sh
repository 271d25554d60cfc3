#!/usr/bin/env bash
# The whole test suite, from a fresh machine: builds the local Kubernetes control plane (cached),
# builds the workspace, starts the cluster with its real node, runs every test including the cluster tests, and stops
# the cluster again, also when a test fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TAILWARDEN_CACHE=${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TAILWARDEN_CACHE/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cd "$root"

"$root/tests/cluster/build.sh"
"$root/tests/prometheus/install.sh"
"$root/tests/images/install.sh"
"$root/tests/helm/build.sh"
"$root/tests/status-page/install.sh"
"$root/tests/services/build.sh"
"$root/tests/rust-deps.sh"
cargo build --workspace --all-targets

# A short bounded fuzz run of the data plane's update parser (longer runs: docs/benchmarks.md).
# Its sanitizer flags get their own target directory, so the main build cache stays valid.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
CARGO_TARGET_DIR="$TAILWARDEN_CACHE/target-fuzz" "$root/dataplane/fuzz/run.sh" "${TAILWARDEN_FUZZ_SECONDS:-30}"

state=$(mktemp -d "${TMPDIR:-/tmp}/tailwarden-test.XXXXXX")
# shellcheck source=tests/lib/bed.sh
source "$root/tests/lib/bed.sh"
stop() {
  local rc=$?
  bed_down "$state" || [[ $rc -ne 0 ]] || rc=1
  if [[ $rc -ne 0 ]]; then
    echo "test run failed (exit $rc); cluster logs kept in $state/logs" >&2
  else
    rm -rf "$state"
  fi
  exit "$rc"
}
trap stop EXIT
# Kafka, Cassandra and the cluster with its real node (tests/lib/bed.sh).
bed_up "$state"

cargo test --workspace --no-fail-fast -- --include-ignored "$@"
