#!/usr/bin/env bash
# Builds OCI image archives of tailwarden-operator and tailwarden-dataplane from the release
# binaries, without a base image: each image is one layer holding the binary, the shared libraries
# it loads (as ldd resolves them here; debug info stripped), CA certificates, and /etc/passwd and /etc/group with the
# non-root user 65532. Reproducible: entries sorted, owners and times fixed (the commit's time),
# gzip without a timestamp, so the same binaries give the same digests.
#
# Usage: scripts/build-images.sh [out-dir (target/images)]
#   SKIP_BUILD=1   use the binaries already in $CARGO_TARGET_DIR/$PROFILE
#   PROFILE=debug  package the debug binaries instead of the release ones (tests do)
# Output: <out-dir>/tailwarden-{operator,dataplane}-<version>.oci.tar (OCI image layout archives,
# loadable with `ctr images import` and `skopeo copy oci-archive:...`), and their digests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TAILWARDEN_CACHE:-$HOME/.cache/tailwarden}/target}
out=${1:-$root/target/images}
cd "$root"
if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release -p tailwarden-operator -p tailwarden-dataplane --bins
fi
profile=${PROFILE:-release}
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/tailwarden/Chart.yaml)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
mkdir -p "$out"
for name in tailwarden-operator tailwarden-dataplane; do
  python3 "$root/scripts/oci_image.py" "$CARGO_TARGET_DIR/$profile/$name" "$name" "$version" "$revision" "$epoch" "$out"
done
