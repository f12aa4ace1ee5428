package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Formats of a report, as --format takes them.
const (
	FormatText   = "text"
	FormatJSON   = "json"
	FormatGitHub = "github"
)

// Write writes r to w in format (FormatText, FormatJSON or FormatGitHub).
// strict only changes the summary ("ok" in JSON): warnings fail the check.
func (r *Report) Write(w io.Writer, format string, strict bool) error {
	switch format {
	case FormatText, "":
		return r.WriteText(w, strict)
	case FormatJSON:
		return r.WriteJSON(w, strict)
	case FormatGitHub:
		return r.WriteGitHub(w, strict)
	}
	return usage("unknown format %q: use text, json or github", format)
}

// WriteText writes the findings grouped by file, each with its position,
// severity, rule, message and fix hint, then a summary line:
//
//	contracts/fleet/v1/global.proto
//	  25:3: error FIELD_NO_DELETE: field 3 "healthy_machines" of fleet.v1.AppPlacement was deleted without reserving its number and name (old version)
//	    fix: add `reserved 3; reserved "healthy_machines";` to message AppPlacement so ...
//
//	strata contract check: 1 error, 0 warnings (contracts: 3 files; against git:main)
func (r *Report) WriteText(w io.Writer, strict bool) error {
	var b strings.Builder
	group := "\x00"
	for _, f := range r.Findings {
		if f.Path != group {
			if group != "\x00" {
				b.WriteByte('\n')
			}
			group = f.Path
			if group == "" {
				b.WriteString("(no file)\n")
			} else {
				b.WriteString(group + "\n")
			}
		}
		b.WriteString("  ")
		if pos := position(f); pos != "" {
			b.WriteString(pos + ": ")
		}
		fmt.Fprintf(&b, "%s %s: %s", f.Severity, f.Rule, f.Message)
		if f.Old {
			b.WriteString(" (old version)")
		}
		b.WriteByte('\n')
		if f.Hint != "" {
			b.WriteString("    fix: " + f.Hint + "\n")
		}
	}
	if len(r.Findings) > 0 {
		b.WriteByte('\n')
	}
	if len(r.Accepted) > 0 {
		fmt.Fprintf(&b, "accepted in %s (not failing the check):\n", r.AcceptFile)
		for _, a := range r.Accepted {
			b.WriteString("  ")
			if a.Path != "" {
				b.WriteString(a.Path + ":")
				if pos := position(a.Finding); pos != "" {
					b.WriteString(pos + ":")
				}
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s %s: %s\n    reason: %s\n", a.Rule, a.Element, a.Message, a.Reason)
		}
		b.WriteByte('\n')
	}
	b.WriteString(r.summary(strict) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// position formats "line:col", "line" or "".
func position(f Finding) string {
	switch {
	case f.Line > 0 && f.Col > 0:
		return strconv.Itoa(f.Line) + ":" + strconv.Itoa(f.Col)
	case f.Line > 0:
		return strconv.Itoa(f.Line)
	}
	return ""
}

// summary is the last line of the text and GitHub formats.
func (r *Report) summary(strict bool) string {
	errs, warnings := r.Count()
	var b strings.Builder
	b.WriteString("strata contract check: ")
	switch {
	case errs == 0 && warnings == 0:
		b.WriteString("ok")
		if len(r.Accepted) > 0 {
			fmt.Fprintf(&b, ", %d accepted", len(r.Accepted))
		}
	default:
		fmt.Fprintf(&b, "%s, %s", plural(errs, "error"), plural(warnings, "warning"))
		if len(r.Accepted) > 0 {
			fmt.Fprintf(&b, ", %d accepted", len(r.Accepted))
		}
		if errs == 0 && strict {
			b.WriteString(" (--strict: warnings fail)")
		}
	}
	fmt.Fprintf(&b, " (%s: %s", r.Dir, plural(len(r.Files), "file"))
	if len(r.Reducers) > 0 {
		fmt.Fprintf(&b, ", %s", plural(len(r.Reducers), "reducer"))
	}
	if r.Against != "" {
		fmt.Fprintf(&b, "; against %s", r.Against)
		if r.AgainstCommit != "" {
			fmt.Fprintf(&b, " = %.12s", r.AgainstCommit)
		}
	}
	b.WriteByte(')')
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// JSONVersion is the version of the JSON report's schema
// (docs/CONTRACT_CHECK.md). Fields may be added within a version; a field
// removed or changed in meaning bumps it.
const JSONVersion = 1

// jsonReport is the JSON form of a Report.
type jsonReport struct {
	Version  int           `json:"version"`
	OK       bool          `json:"ok"`
	Strict   bool          `json:"strict"`
	Dir      string        `json:"contracts"`
	Against  string        `json:"against"`
	Commit   string        `json:"against_commit,omitempty"`
	Files    []string      `json:"files"`
	Reducers []string      `json:"reducers"`
	Summary  jsonSummary   `json:"summary"`
	Findings []jsonFinding `json:"findings"`
	// AcceptFile and Accepted are the accept file read and the findings
	// it accepted, each with the reason.
	AcceptFile string        `json:"accept_file"`
	Accepted   []jsonFinding `json:"accepted"`
}

type jsonSummary struct {
	Errors   int `json:"errors"`
	Warnings int `json:"warnings"`
	Accepted int `json:"accepted"`
}

type jsonFinding struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
	Old      bool   `json:"old"`
	Message  string `json:"message"`
	Hint     string `json:"hint"`
	Element  string `json:"element,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// WriteJSON writes r as one indented JSON object (docs/CONTRACT_CHECK.md).
func (r *Report) WriteJSON(w io.Writer, strict bool) error {
	errs, warnings := r.Count()
	out := jsonReport{
		Version: JSONVersion, OK: !r.Failed(strict), Strict: strict,
		Dir: r.Dir, Against: r.Against, Commit: r.AgainstCommit,
		Files: nonNil(r.Files), Reducers: nonNil(r.Reducers),
		Summary:    jsonSummary{Errors: errs, Warnings: warnings, Accepted: len(r.Accepted)},
		Findings:   make([]jsonFinding, len(r.Findings)),
		AcceptFile: r.AcceptFile,
		Accepted:   make([]jsonFinding, len(r.Accepted)),
	}
	for i, f := range r.Findings {
		out.Findings[i] = toJSON(f)
	}
	for i, a := range r.Accepted {
		out.Accepted[i] = toJSON(a.Finding)
		out.Accepted[i].Reason = a.Reason
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

func toJSON(f Finding) jsonFinding {
	return jsonFinding{
		Rule: f.Rule, Severity: f.Severity.String(), File: f.Path,
		Line: f.Line, Column: f.Col, Old: f.Old, Message: f.Message, Hint: f.Hint,
		Element: f.Element,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WriteGitHub writes one GitHub Actions workflow command per finding, which
// GitHub shows as an annotation on the file and line, then the summary:
//
//	::error file=contracts/fleet/v1/global.proto,line=25,col=3,title=FIELD_NO_DELETE::field 3 ... Fix: add ...
func (r *Report) WriteGitHub(w io.Writer, strict bool) error {
	var b strings.Builder
	for _, f := range r.Findings {
		level := "warning"
		if f.Severity.String() == "error" {
			level = "error"
		}
		var props []string
		if f.Path != "" {
			props = append(props, "file="+ghProperty(f.Path))
			if f.Line > 0 {
				props = append(props, "line="+strconv.Itoa(f.Line))
			}
			if f.Col > 0 {
				props = append(props, "col="+strconv.Itoa(f.Col))
			}
		}
		props = append(props, "title="+ghProperty(f.Rule))
		msg := f.Message
		if f.Old {
			msg += " (old version)"
		}
		if f.Hint != "" {
			if !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, ".") {
				msg += "."
			}
			msg += " Fix: " + f.Hint
		}
		fmt.Fprintf(&b, "::%s %s::%s\n", level, strings.Join(props, ","), ghData(msg))
	}
	for _, a := range r.Accepted {
		var props []string
		if a.Path != "" {
			props = append(props, "file="+ghProperty(a.Path))
			if a.Line > 0 {
				props = append(props, "line="+strconv.Itoa(a.Line))
			}
		}
		props = append(props, "title="+ghProperty(a.Rule+" (accepted)"))
		fmt.Fprintf(&b, "::notice %s::%s. Accepted in %s: %s\n", strings.Join(props, ","), ghData(a.Message), ghData(r.AcceptFile), ghData(a.Reason))
	}
	b.WriteString(r.summary(strict) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// ghData escapes a workflow command's message.
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// ghProperty escapes a workflow command's property value.
func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// WriteGitHubError writes err, a problem that stopped the check (a bad
// flag, a directory that does not exist, an old version that does not
// compile), as one GitHub Actions error annotation, so that --format github
// shows it on the run's summary like the findings.
func WriteGitHubError(w io.Writer, err error) error {
	_, werr := fmt.Fprintf(w, "::error title=strata contract check::%s\n", ghData(err.Error()))
	return werr
}
