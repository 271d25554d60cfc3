// Test tooling only (not product code): pins the Grafana Foundation SDK (Apache-2.0) whose
// dashboard model tests/dashboards/build.sh compiles into dashboard-check.
module tailwarden.local/tests/dashboards

go 1.26.0

require github.com/grafana/grafana-foundation-sdk/go v0.0.22
