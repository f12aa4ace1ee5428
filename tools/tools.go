// Package tools pins the developer tools strata's checks run (staticcheck,
// benchstat) in their own module, so they stay out of the product's
// dependency graph. Run them with `go tool -modfile=tools/go.mod NAME`.
package tools
