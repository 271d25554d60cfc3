#!/usr/bin/env bash
# Installs what the image tests use from Debian: containerd (with runc) to import and run the
# images, skopeo to push and pull them, and docker-registry as a registry on loopback.
set -euo pipefail
install="$(dirname "${BASH_SOURCE[0]}")/../debian-install.sh"
"$install" ctr containerd runc
"$install" skopeo skopeo
"$install" docker-registry docker-registry
