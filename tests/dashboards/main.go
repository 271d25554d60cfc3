// dashboard-check reads each Grafana dashboard JSON file named on the command line into the
// dashboard model of the Grafana Foundation SDK, strictly: an unknown field, a field of the wrong
// type or a missing required field anywhere (panel options and field config of the built-in
// panel types, Prometheus targets, variables, annotations) fails. Test tooling only; the
// dashboards test in tests/tests/dashboards.rs runs it.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-check DASHBOARD.json...")
		os.Exit(2)
	}
	// The panel and query types, so their options and targets are read strictly too.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func check(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var d dashboard.Dashboard
	if err := d.UnmarshalJSONStrict(raw); failed(err) {
		return fmt.Errorf("does not match the SDK's dashboard model: %w", err)
	}
	if err := d.Validate(); failed(err) {
		return fmt.Errorf("is not valid: %w", err)
	}
	return nil
}

// failed tells whether err is an error: the SDK returns its error list even when it is empty,
// as a non-nil error holding no errors.
func failed(err error) bool {
	var list cog.BuildErrors
	if errors.As(err, &list) {
		return len(list) > 0
	}
	return err != nil
}
