package api

import "github.com/strata-state/strata/agent/api/client"

// The API's wire types are defined once, in the stdlib-only client
// package; the server uses them through these aliases.
type (
	// Error is an API error: the body of every non-2xx answer.
	Error = client.Error
	// Detail is one structured cause of an Error.
	Detail = client.Detail
	// RowBody is one row as the API shows it.
	RowBody = client.RowBody
	// WriteResult answers PUT, PATCH and DELETE of a row.
	WriteResult = client.WriteResult
	// BatchResult answers POST /v1/regional/{table}.
	BatchResult = client.BatchResult
	// ListResult answers GET /v1/regional/{table}.
	ListResult = client.ListResult
	// KeyChange is the body of POST /v1/keys/{tier}/{add|use|remove}.
	KeyChange = client.KeyChange
	// GlobalEvent is the data of a global watch event.
	GlobalEvent = client.GlobalEvent
	// WatchEvent is one server-sent event of a watch stream.
	WatchEvent = client.WatchEvent
	// Client is the Go client; new code imports agent/api/client.
	Client = client.Client
)

// NewClient returns a client for the agent at addr; see client.New. New
// code imports agent/api/client, which needs only the standard library.
func NewClient(addr, token string) *Client { return client.New(addr, token) }

// Error codes in API error bodies; see the client package.
const (
	CodeBadRequest   = client.CodeBadRequest
	CodeInvalidRow   = client.CodeInvalidRow
	CodeKeyMismatch  = client.CodeKeyMismatch
	CodeNotFound     = client.CodeNotFound
	CodeTooLarge     = client.CodeTooLarge
	CodeUnauthorized = client.CodeUnauthorized
	CodeForbidden    = client.CodeForbidden
	CodeUnavailable  = client.CodeUnavailable
	CodeConflict     = client.CodeConflict
	CodeInternal     = client.CodeInternal
	CodeMethod       = client.CodeMethod
)

// errorBody is the JSON envelope of an Error.
type errorBody = client.ErrorBody
