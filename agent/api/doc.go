// Package api is strata's HTTP API and the Go client that the CLI uses.
//
// The server (Server) exposes the regional tier's tables under
// /v1/regional/{table}, watch streams as server-sent events under /v1/watch,
// and /v1/status, /v1/health and /metrics. Bodies are protojson; every row
// written is decoded strictly and validated against its table's contract
// before it reaches the store. Errors have one shape:
//
//	{"error": {"code": "invalid_row", "message": "...", "details": [...]}}
//
// The client (Client) is the public Go API for programs that talk to an
// agent; it returns *Error for answers in that shape.
package api
