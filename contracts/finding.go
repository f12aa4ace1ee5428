package contracts

import (
	"cmp"
	"slices"
	"strings"
)

// Severity says whether a Finding fails a check.
type Severity int

const (
	// SeverityError fails `strata contract check`.
	SeverityError Severity = iota + 1
	// SeverityWarning is reported but fails the check only with --strict.
	SeverityWarning
)

// String returns "error" or "warning".
func (s Severity) String() string {
	switch s {
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	}
	return "unknown"
}

// Finding is one problem a contract check reports: a compile error, a
// broken strata rule, a lint warning or an incompatible change. Lint and
// Compare return them; the check command adds its own (reducer conformance)
// and prints them.
type Finding struct {
	// Rule is the stable id of the rule, e.g. "FIELD_NO_DELETE"; see
	// docs/CONTRACT_CHECK.md for the list.
	Rule string
	// Severity is SeverityError or SeverityWarning.
	Severity Severity
	// File is the import path of the file the finding points into, e.g.
	// "fleet/v1/global.proto"; empty when it points nowhere.
	File string
	// Line and Col are 1-based; 0 when unknown.
	Line, Col int
	// Old is set when the position is in the old version of the contract:
	// for what was deleted, there is nothing to point at in the new one.
	Old bool
	// Message says what is wrong, in one line.
	Message string
	// Hint says how to fix it, in one line.
	Hint string
	// Element names what a compatibility finding is about, for accepting
	// it on purpose: the full name of a message, enum or field
	// ("fleet.v1.AppPlacement.healthy_machines"), of an enum value as
	// enum and value ("fleet.v1.MachineState.MACHINE_STATE_STOPPED"), or
	// the name of a table or record ("app_placements"); in the version
	// the finding points into. Empty for other findings.
	Element string
}

// FindingOf turns a Diagnostic from Compile into an error Finding, with the
// fix hint of its rule.
func FindingOf(d Diagnostic) Finding {
	rule := cmp.Or(d.Rule, ruleCompile)
	return Finding{
		Rule: rule, Severity: SeverityError,
		File: d.File, Line: d.Line, Col: d.Col,
		Message: d.Msg, Hint: ruleHints[rule],
	}
}

// ruleHints are the fix hints of the rules whose findings all take the
// same fix.
var ruleHints = map[string]string{
	ruleCompile:            "fix the .proto source at this position; every compile error is listed",
	ruleOption:             "write the option as strata/v1/options.proto declares it",
	ruleName:               "set name: a letter, then letters, digits, '_' or '-', at most 64 characters",
	ruleNameUnique:         "rename one of the two: table and record names share one namespace",
	ruleKey:                "list in key the names of singular string, integer, bool or enum fields of the message",
	ruleTableOrRecord:      "keep one of the two options; use two messages for a table and a record",
	ruleRecordRegionalOnly: "drop the field from the record, or publish a coarse value computed by the reducer instead",
	ruleRecordTable:        "give the record its own message with only the coarse fields other regions need",
	ruleValidateCompile:    "fix the buf.validate rule: see the CEL or type error quoted",
}

// SortFindings sorts findings by file, position, rule and message: the
// order every output of the check uses.
func SortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			strings.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
			strings.Compare(a.Rule, b.Rule),
			strings.Compare(a.Message, b.Message),
		)
	})
}
