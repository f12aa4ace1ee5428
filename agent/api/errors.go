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
	case errors.Is(err, store.ErrUnconfirmed):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: err.Error() + ": the store is busy; read the row back before retrying a write that is not idempotent"}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: "the store did not take the write in time (it is busy or stuck, see /v1/health): not applied; retry later"}
	case errors.Is(err, context.Canceled):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "request canceled"}
	case errors.Is(err, store.ErrReadOnly), errors.Is(err, store.ErrUnwritable), errors.Is(err, store.ErrCorrupt):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error()}
	case errors.Is(err, store.ErrClosed):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the agent is shutting down"}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
}
