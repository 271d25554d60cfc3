#!/usr/bin/env bash
# Copies the Grafana dashboards of dashboards/ into the chart (charts/tailwarden/dashboards/), which
# can only load files inside its own directory (.Files.Get). tests/tests/dashboards.rs fails while
# the copies differ.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/charts/tailwarden/dashboards
mkdir -p "$dest"
rm -f "$dest"/*.json
cp "$root"/dashboards/*.json "$dest"/
echo "copied $(ls "$root"/dashboards/*.json | wc -l) dashboards into charts/tailwarden/dashboards"
