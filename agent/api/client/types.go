package client

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Error codes in API error bodies. Clients branch on these, so they are
// stable.
const (
	CodeBadRequest   = "bad_request"  // malformed JSON, bad query parameter, key over the length limit
	CodeInvalidRow   = "invalid_row"  // a row that breaks its contract
	CodeKeyMismatch  = "key_mismatch" // URL key differs from the body's key fields
	CodeNotFound     = "not_found"    // unknown table, or no such row
	CodeTooLarge     = "too_large"    // body over api.max_body
	CodeUnauthorized = "unauthorized" // missing or wrong bearer token
	CodeForbidden    = "forbidden"    // a cross-origin or DNS-rebinding request, without a token
	CodeUnavailable  = "unavailable"  // the agent is shutting down, or its store takes no writes
	CodeConflict     = "conflict"     // the row cannot take this write (its causal length is at the limit)
	CodeInternal     = "internal"     // a bug or an I/O failure; see the agent log
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

// ErrorBody is the JSON envelope of an Error.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// RowBody is one row as the API shows it.
type RowBody struct {
	// Key is the row key: the key fields' values, joined with "/" when
	// there are several.
	Key string `json:"key"`
	// Row is the row as protojson.
	Row json.RawMessage `json:"row,omitempty"`
	// Stamp is the stamp of the row's last change.
	Stamp string `json:"stamp"`
	// Deleted is set in watch events for a deleted row.
	Deleted bool `json:"deleted,omitempty"`
}

// WriteResult answers PUT, PATCH and DELETE of a row.
type WriteResult struct {
	Key   string `json:"key"`
	Stamp string `json:"stamp"`
}

// BatchResult answers POST /v1/regional/{table}.
type BatchResult struct {
	// Written is the number of rows written, all in one transaction.
	Written int `json:"written"`
	// Stamp is the stamp of the last row written.
	Stamp string `json:"stamp,omitempty"`
}

// ListResult answers GET /v1/regional/{table}.
type ListResult struct {
	Rows []RowBody `json:"rows"`
	// Next, when set, is the `after` value for the next page.
	Next string `json:"next,omitempty"`
}

// Member is one member of a tier, as GET /v1/members shows it.
type Member struct {
	Name   string   `json:"name"`
	Addr   string   `json:"addr"`
	State  string   `json:"state"` // alive, suspect, dead, left
	Region string   `json:"region,omitempty"`
	Roles  []string `json:"roles,omitempty"`
	API    string   `json:"api,omitempty"`
	// Keys are the short fingerprints of the keys the member holds, the
	// primary first, as it advertises them.
	Keys []string `json:"keys,omitempty"`
	// DecryptFailures counts the packets and streams from the member the
	// answering node could not decrypt (a key it does not hold).
	DecryptFailures uint64 `json:"decrypt_failures,omitempty"`
	// Protocol is the range of strata protocol versions the member speaks
	// on this tier, "min-max" ("1-1" for members older than versioning).
	Protocol string `json:"protocol"`
	// Build is the member's build (module version and VCS revision), if
	// it advertises one.
	Build string `json:"build,omitempty"`
}

// MembersResult answers GET /v1/members: each tier's members.
type MembersResult struct {
	Node  string              `json:"node"`
	Tiers map[string][]Member `json:"tiers"`
	// Publisher is the node's region's publisher as the node sees it;
	// empty when the region has none.
	Publisher string `json:"publisher,omitempty"`
}

// PublisherStatus is the "publisher" object of GET /v1/status: the
// region's publisher as the answering node sees it.
type PublisherStatus struct {
	// Node is the publisher; "" when the region has none.
	Node string `json:"node"`
	// Gateways are the region's alive gateways, by name.
	Gateways []string `json:"gateways"`
}

// KeyChange is the body of POST /v1/keys/{tier}/{add|use|remove}.
type KeyChange struct {
	// Key is the AES key, base64.
	Key string `json:"key"`
	// Fingerprint, for "remove" only, names the key to remove instead of
	// Key: a fingerprint from /v1/keys, or its 8-digit prefix.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Force, for "use" only, uses the key even while alive members of the
	// tier do not advertise it (they lose contact with this node).
	Force bool `json:"force,omitempty"`
}

// KeyInfo is a tier's keyring as the API shows it: fingerprints, never keys.
type KeyInfo struct {
	// Primary is the fingerprint of the key that encrypts.
	Primary string `json:"primary"`
	// Keys are the fingerprints of every key accepted for decryption.
	Keys []string `json:"keys"`
}

// GlobalEvent is the data of a global watch event: one region's record
// under one key.
type GlobalEvent struct {
	Key         string          `json:"key"`
	Region      string          `json:"region"`
	Record      json.RawMessage `json:"record,omitempty"`
	PublishedAt time.Time       `json:"published_at"`
	Deleted     bool            `json:"deleted,omitempty"`
}
