package check

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/strata-state/strata/contracts"
)

// AcceptFile is the file of accepted breaking changes that Run reads from
// the working directory when Options.Accept is empty and the file exists:
// checked in beside the contract, so that every accepted change shows in
// review.
const AcceptFile = "strata-accept.toml"

// Acceptance is one breaking change accepted on purpose, an [[accept]]
// entry of the accept file:
//
//	[[accept]]
//	rule = "FIELD_NO_DELETE"
//	element = "fleet.v1.AppPlacement.healthy_machines"
//	reason = "no reader left since release 1.8 (OPS-123)"
//
// It accepts the findings of Rule whose element (Finding.Element) is
// Element, or is inside it ("fleet.v1.AppPlacement" accepts its fields').
type Acceptance struct {
	Rule    string `toml:"rule"`
	Element string `toml:"element"`
	Reason  string `toml:"reason"`
	// line is the entry's line in the file, for ACCEPT_UNUSED.
	line int
}

// Accepted is a finding an Acceptance accepted: reported, but not failing
// the check.
type Accepted struct {
	Finding
	// Reason is the acceptance's reason.
	Reason string
}

// ruleAcceptUnused is the warning for an acceptance that matches nothing.
const ruleAcceptUnused = "ACCEPT_UNUSED"

// matches reports whether a accepts f.
func (a Acceptance) matches(f contracts.Finding) bool {
	return f.Element != "" && a.Rule == f.Rule &&
		(f.Element == a.Element || strings.HasPrefix(f.Element, a.Element+"."))
}

// loadAccept reads the accept file name; "" means AcceptFile if it exists.
// It returns the file read ("" for none) and its entries; errors are the
// caller's to fix (usage errors).
func loadAccept(name string) (string, []Acceptance, error) {
	explicit := name != ""
	if !explicit {
		name = AcceptFile
	}
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("--accept %s: %w", name, err)
	}
	var file struct {
		Accept []Acceptance `toml:"accept"`
	}
	md, err := toml.Decode(string(data), &file)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", name, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return "", nil, fmt.Errorf("%s: unknown key %q: an [[accept]] entry has rule, element and reason", name, undecoded[0].String())
	}
	lines := entryLines(data)
	for i := range file.Accept {
		a := &file.Accept[i]
		if i < len(lines) {
			a.line = lines[i]
		}
		var missing []string
		for _, kv := range [][2]string{{"rule", a.Rule}, {"element", a.Element}, {"reason", a.Reason}} {
			if strings.TrimSpace(kv[1]) == "" {
				missing = append(missing, kv[0])
			}
		}
		if len(missing) > 0 {
			return "", nil, fmt.Errorf("%s:%d: [[accept]] entry without %s: each names the rule, the element and why the change is accepted", name, a.line, strings.Join(missing, " and "))
		}
	}
	return name, file.Accept, nil
}

// entryLines returns the line of each "[[accept]]" header of data, in
// order.
func entryLines(data []byte) []int {
	var out []int
	for n, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(strings.SplitN(line, "#", 2)[0]) == "[[accept]]" {
			out = append(out, n+1)
		}
	}
	return out
}

// accept moves the findings that an acceptance of file accepts from
// r.Findings to r.Accepted. With compared set (there was an --against),
// an acceptance that accepts nothing is an ACCEPT_UNUSED warning.
func (r *Report) accept(file string, list []Acceptance, compared bool) {
	if len(list) == 0 {
		return
	}
	used := make([]bool, len(list))
	kept := r.Findings[:0]
	for _, f := range r.Findings {
		i := -1
		for j, a := range list {
			if a.matches(f.Finding) {
				i = j
				break
			}
		}
		if i < 0 {
			kept = append(kept, f)
			continue
		}
		used[i] = true
		r.Accepted = append(r.Accepted, Accepted{Finding: f, Reason: list[i].Reason})
	}
	r.Findings = kept
	r.AcceptFile = file
	if !compared {
		return
	}
	for i, a := range list {
		if used[i] {
			continue
		}
		r.addAt(contracts.Finding{
			Rule: ruleAcceptUnused, Severity: contracts.SeverityWarning, Line: a.line,
			Message: fmt.Sprintf("the accepted %s of %s is not reported any more", a.Rule, strconv.Quote(a.Element)),
			Hint:    "remove the entry: the change it accepted is released, or was undone (or the rule or element is misspelt)",
		}, file)
	}
}
