//go:build tools

// Package tools makes `go mod tidy` keep the conformance suite in go.mod.
package tools

import _ "sigs.k8s.io/gateway-api/conformance"
