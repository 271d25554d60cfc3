//go:build tools

// Package tools only exists so that `go mod tidy` keeps the helm CLI (and so its whole dependency
// graph) in go.mod/go.sum. build.sh builds helm.sh/helm/v3/cmd/helm directly with `go build`.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
