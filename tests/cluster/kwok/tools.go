//go:build tools

// Package tools only exists so that `go mod tidy` keeps sigs.k8s.io/kwok/cmd/kwok
// (and its dependency graph) in go.mod/go.sum; build.sh builds it directly.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
