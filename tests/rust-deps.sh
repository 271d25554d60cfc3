#!/usr/bin/env bash
# Native build dependencies of the Rust workspace, from Debian, installed only when missing:
# rdkafka builds librdkafka from source with cmake (its `cmake-build` feature, because Debian's
# librdkafka is older than the one rdkafka needs) and needs curl's headers even with curl off.
set -euo pipefail
install="$(dirname "${BASH_SOURCE[0]}")/debian-install.sh"
"$install" cmake cmake
"$install" c++ g++
"$install" pkg-config pkg-config
"$install" curl-config libcurl4-openssl-dev
