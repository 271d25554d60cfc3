#!/usr/bin/env bash
# Bounded fuzz run of the record parser: dataplane/fuzz/run.sh [seconds] (default 60).
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, sancov passes). No nightly toolchain can
# be downloaded here, so the stable toolchain is unlocked with RUSTC_BOOTSTRAP=1, which makes
# stable rustc accept -Z flags. Install once: `cargo install cargo-fuzz --locked`.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN=${1:-60}
mkdir -p corpus/parse_record
# Seed corpus: one valid record per class shape.
printf '%s\n' '{"event_id":"e1","class":"pricing","schema_version":2,"key":{"product_id":"P1","valid_from":"2026-01-01T00:00:00Z"},"event_time":"2026-11-23T10:00:00Z","sequence":1,"payload":{"amount":"19.99","currency":"usd","valid_to":1900000000000}}' > corpus/parse_record/pricing
printf '%s\n' '{"event_id":"e2","class":"inventory","schema_version":1,"key":{"product_id":"P1","location":"s1"},"event_time":5,"version":2,"payload":{"qty":4,"unit":"EA"}}' > corpus/parse_record/inventory
printf '%s\n' '[{"class":"product","schema_version":2,"key":{"product_id":"P1"},"payload":{"name":" x ","weight":{"value":1,"unit":"lb"},"enrichment":{}}}]' > corpus/parse_record/product
RUSTC_BOOTSTRAP=1 cargo fuzz run parse_record corpus/parse_record -- \
  -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -rss_limit_mb=2048
