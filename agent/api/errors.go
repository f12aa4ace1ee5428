package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// Error codes in API error bodies. Clients branch on these, so they are
// stable.
const (
	CodeBadRequest   = "bad_request"  // malformed JSON, bad query parameter
	CodeInvalidRow   = "invalid_row"  // a row that breaks its contract
	CodeKeyMismatch  = "key_mismatch" // URL key differs from the body's key fields
	CodeNotFound     = "not_found"    // unknown table, or no such row
	CodeTooLarge     = "too_large"    // body over api.max_body
	CodeUnauthorized = "unauthorized" // missing or wrong bearer token
	CodeForbidden    = "forbidden"    // a cross-origin or DNS-rebinding request, without a token
	CodeUnavailable  = "unavailable"  // the agent is shutting down, or its store takes no writes
	CodeInternal     = "internal"     // a bug or an I/O failure; see the agent log
	CodeConflict     = "conflict"     // the row cannot take this write (its causal length is at the limit)
	CodeMethod       = "method_not_allowed"
)

// Error is an API error: the body of every non-2xx answer, and the error
// the Client returns for one.
type Error struct {
	// Status is the HTTP status code (set by the client; not in the body).
	Status int `json:"-"`
	// Code is one of the Code constants.
	Code string `json:"code"`
	// Message says what is wrong, naming the field or key.
	Message string `json:"message"`
	// Details carry structured causes, such as one Detail per violated rule.
	Details []Detail `json:"details,omitempty"`
}

// Detail is one structured cause of an Error.
type Detail struct {
	// Index is the position in a batch body of the row at fault.
	Index *int `json:"index,omitempty"`
	// Field is the field path, e.g. "private_ip".
	Field string `json:"field,omitempty"`
	// Rule is the contract rule id, e.g. "string.ip" or "unknown_field".
	Rule string `json:"rule,omitempty"`
	// Message explains the cause.
	Message string `json:"message,omitempty"`
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.Code, e.Message)
	for _, d := range e.Details {
		b.WriteString("\n  ")
		if d.Index != nil {
			fmt.Fprintf(&b, "row %d: ", *d.Index)
		}
		if d.Field != "" {
			fmt.Fprintf(&b, "%s: ", d.Field)
		}
		b.WriteString(d.Message)
		if d.Rule != "" {
			fmt.Fprintf(&b, " [%s]", d.Rule)
		}
	}
	return b.String()
}

// errorBody is the JSON envelope of an Error.
type errorBody struct {
	Error *Error `json:"error"`
}

// writeError answers with e, whose Status must be set.
func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, errorBody{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v) // a failed write means the client went away
}

// rowError turns an error from decoding, validating or keying a row into
// an API error. index is the row's position in a batch, or -1.
func rowError(table string, index int, err error) *Error {
	var idx *int
	where := ""
	if index >= 0 {
		idx = &index
		where = fmt.Sprintf(" (row %d)", index)
	}
	var de *contracts.DecodeError
	var ve *contracts.ValidationError
	var ke *contracts.KeyError
	var mbe *http.MaxBytesError
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
			Message: fmt.Sprintf("request body is over the %d-byte limit (api.max_body)", mbe.Limit)}
	case errors.As(err, &ve):
		e := &Error{Status: http.StatusBadRequest, Code: CodeInvalidRow, Message: fmt.Sprintf("%s%s breaks the contract: %s", table, where, ve.Violations[0])}
		for _, v := range ve.Violations {
			e.Details = append(e.Details, Detail{Index: idx, Field: v.Field, Rule: v.Rule, Message: v.Message})
		}
		return e
	case errors.As(err, &de):
		rule := "decode"
		if errors.Is(err, contracts.ErrUnknownField) {
			rule = "unknown_field"
		}
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRow,
			Message: fmt.Sprintf("%s%s: %s", table, where, strings.TrimPrefix(de.Error(), "contracts: ")),
			Details: []Detail{{Index: idx, Field: de.Field, Rule: rule, Message: strings.TrimPrefix(de.Error(), "contracts: ")}}}
	case errors.As(err, &ke):
		return &Error{Status: http.StatusBadRequest, Code: CodeKeyMismatch,
			Message: fmt.Sprintf("%s%s", strings.TrimPrefix(ke.Error(), "contracts: "), where),
			Details: []Detail{{Index: idx, Field: ke.Field, Rule: "key", Message: ke.Reason}}}
	}
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf("%s%s: %v", table, where, err)}
}

// storeError maps a store error to an API error.
func storeError(err error) *Error {
	var nf *store.NotFoundError
	switch {
	case errors.As(err, &nf):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no row %q in table %q", nf.Key, nf.Table)}
	case errors.Is(err, store.ErrCausalLength):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, store.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "request canceled"}
	case errors.Is(err, store.ErrReadOnly), errors.Is(err, store.ErrUnwritable), errors.Is(err, store.ErrCorrupt):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error()}
	case errors.Is(err, store.ErrClosed):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the agent is shutting down"}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
}
