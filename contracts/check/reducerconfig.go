package check

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/levenshtein"
)

// ReducerConfig checks that every reducer's inputs are tables of c and its
// outputs records of c, as the agent needs them when it runs the reducer.
// Each problem is a REDUCER_CONFIG error that names the reducer and the
// name, says which table or record was meant when one is close ("did you
// mean"), and carries a fix hint. `strata agent --check` and `strata
// contract check --config` both run it, so a typo fails before the agent
// starts.
func ReducerConfig(c *contracts.Contract, reducers []Reducer) []contracts.Finding {
	var out []contracts.Finding
	for _, p := range reducerConfig(c, reducers) {
		out = append(out, p.Finding)
	}
	return out
}

// configProblem is a REDUCER_CONFIG finding about key ("inputs" or
// "outputs") of a reducer.
type configProblem struct {
	contracts.Finding
	reducer, key string
}

func reducerConfig(c *contracts.Contract, reducers []Reducer) []configProblem {
	var tables, records []string
	for _, s := range c.Tables() {
		tables = append(tables, s.Name)
	}
	for _, s := range c.Records() {
		records = append(records, s.Name)
	}
	var out []configProblem
	for _, r := range reducers {
		for _, name := range r.Inputs {
			if _, ok := c.Table(name); !ok {
				out = append(out, configProblem{configFinding(r.Name, "inputs", name, "table", tables, records), r.Name, "inputs"})
			}
		}
		for _, name := range r.Outputs {
			if _, ok := c.Record(name); !ok {
				out = append(out, configProblem{configFinding(r.Name, "outputs", name, "record", records, tables), r.Name, "outputs"})
			}
		}
	}
	return out
}

// configFinding is the REDUCER_CONFIG finding for name, listed in key of
// reducer, that is no kind ("table" or "record") of the contract: want
// are the names of that kind, other those of the other kind.
func configFinding(reducer, key, name, kind string, want, other []string) contracts.Finding {
	msg := fmt.Sprintf("reducer %s: %s: %q is not a %s of the contract", reducer, key, name, kind)
	otherKind := map[string]string{"table": "record", "record": "table"}[kind]
	var hint string
	switch best := closest(name, want); {
	case slices.Contains(other, name):
		msg += fmt.Sprintf(" (it is a %s)", otherKind)
		hint = fmt.Sprintf("a reducer reads tables and writes records: move %q to the reducer's %s", name, map[string]string{"inputs": "outputs", "outputs": "inputs"}[key])
	case best != "":
		msg += fmt.Sprintf("; did you mean %q?", best)
		hint = fmt.Sprintf("in the [[reducers]] entry named %q, replace %q with %q in %s", reducer, name, best, key)
	case len(want) == 0:
		hint = fmt.Sprintf("the contract declares no %s: add the option (strata.v1.%s) to a message, or fix [contracts] files", kind, kind)
	default:
		hint = fmt.Sprintf("in the [[reducers]] entry named %q, list in %s only %ss of the contract: %s", reducer, key, kind, strings.Join(want, ", "))
	}
	return contracts.Finding{Rule: ruleReducerConfig, Severity: contracts.SeverityError, Message: msg, Hint: hint}
}

// closest returns the name among candidates that name is most likely a
// typo of: the same but for case, or at an edit distance of at most a third
// of its length (at least 1, at most 3); "" when none is.
func closest(name string, candidates []string) string {
	best, bestDist := "", 0
	limit := min(max(len(name)/3, 1), 3)
	for _, c := range candidates {
		if strings.EqualFold(c, name) {
			return c
		}
		if d := levenshtein.Distance(name, c); d <= limit && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// configLine returns the line of key ("inputs" or "outputs") in the
// [[reducers]] entry named reducer of an agent.toml, or 0 when it cannot
// tell: a best effort for positions, which the finding's message does not
// depend on.
func configLine(data []byte, reducer, key string) int {
	nameRE := regexp.MustCompile(`^\s*name\s*=\s*["']` + regexp.QuoteMeta(reducer) + `["']`)
	keyRE := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(key) + `\s*=`)
	sc := bufio.NewScanner(bytes.NewReader(data))
	inReducers, found, keyLine := false, false, 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			if found && keyLine > 0 {
				return keyLine
			}
			inReducers, found, keyLine = line == "[[reducers]]", false, 0
			continue
		}
		if !inReducers {
			continue
		}
		if nameRE.MatchString(line) {
			found = true
		}
		if keyRE.MatchString(line) {
			keyLine = n
		}
	}
	if found {
		return keyLine
	}
	return 0
}
