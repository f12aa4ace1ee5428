package check

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAccept: a breaking change listed in the accept file, by rule and
// element, is reported as accepted with its reason and fails nothing; an
// entry that accepts nothing is a warning; a malformed file is a usage
// error.
func TestAccept(t *testing.T) {
	src := caseDir(t, "field_delete")
	opts := Options{Dir: filepath.Join(src, "new"), Against: filepath.Join(src, "old")}
	write := func(t *testing.T, text string) string {
		t.Helper()
		name := filepath.Join(t.TempDir(), "accept.toml")
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return name
	}
	run := func(t *testing.T, opts Options) *Report {
		t.Helper()
		r, err := Run(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	r := run(t, opts)
	if len(r.Findings) != 1 || r.Findings[0].Element != "acme.v1.Placement.count" {
		t.Fatalf("without an accept file: want one FIELD_NO_DELETE of acme.v1.Placement.count, got %+v", r.Findings)
	}

	for name, element := range map[string]string{"the field": "acme.v1.Placement.count", "its message": "acme.v1.Placement"} {
		t.Run("accepts "+name, func(t *testing.T) {
			opts := opts
			opts.Accept = write(t, `# accepted on purpose
[[accept]]
rule = "FIELD_NO_DELETE"
element = "`+element+`"
reason = "count moved to placements_v2; no reader left"
`)
			r := run(t, opts)
			if r.Failed(true) || len(r.Findings) != 0 || len(r.Accepted) != 1 {
				t.Fatalf("findings %+v, accepted %+v", r.Findings, r.Accepted)
			}
			var text, js bytes.Buffer
			if err := r.WriteText(&text, true); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteJSON(&js, true); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"accepted in " + opts.Accept + " (not failing the check):\n  " + filepath.ToSlash(filepath.Join(src, "old", "acme/v1/acme.proto")) + ":21:3: FIELD_NO_DELETE acme.v1.Placement.count: field 2",
				"    reason: count moved to placements_v2; no reader left\n",
				"strata contract check: ok, 1 accepted (",
			} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("text lacks %q:\n%s", want, text.String())
				}
			}
			for _, want := range []string{`"ok": true`, `"accepted": 1`, `"element": "acme.v1.Placement.count"`, `"reason": "count moved to placements_v2; no reader left"`} {
				if !strings.Contains(js.String(), want) {
					t.Errorf("JSON lacks %q:\n%s", want, js.String())
				}
			}
		})
	}

	t.Run("unused entry", func(t *testing.T) {
		opts := opts
		opts.Accept = write(t, "[[accept]]\nrule = \"FIELD_NO_DELETE\"\nelement = \"acme.v1.Placement.count\"\nreason = \"r\"\n\n[[accept]]\nrule = \"FIELD_SAME_TYPE\"\nelement = \"acme.v1.Placement.count\"\nreason = \"r\"\n")
		r := run(t, opts)
		if len(r.Findings) != 1 || r.Findings[0].Rule != ruleAcceptUnused || r.Findings[0].Line != 6 || r.Findings[0].Path != filepath.ToSlash(opts.Accept) {
			t.Fatalf("want one ACCEPT_UNUSED at %s:6, got %+v", opts.Accept, r.Findings)
		}
		if r.Failed(false) || !r.Failed(true) {
			t.Error("ACCEPT_UNUSED should be a warning")
		}
	})

	t.Run("default file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, AcceptFile), []byte("[[accept]]\nrule = \"FIELD_NO_DELETE\"\nelement = \"acme.v1.Placement\"\nreason = \"r\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Chdir(dir)
		if r := run(t, opts); len(r.Accepted) != 1 || r.AcceptFile != AcceptFile {
			t.Errorf("%s in the working directory not read: %+v", AcceptFile, r)
		}
	})

	for name, text := range map[string]string{
		"no reason":   "[[accept]]\nrule = \"FIELD_NO_DELETE\"\nelement = \"acme.v1.Placement\"\n",
		"unknown key": "[[accept]]\nrule = \"FIELD_NO_DELETE\"\nelement = \"acme.v1.Placement\"\nreason = \"r\"\npath = \"x\"\n",
		"bad TOML":    "[[accept]\n",
	} {
		t.Run(name, func(t *testing.T) {
			opts := opts
			opts.Accept = write(t, text)
			_, err := Run(context.Background(), opts)
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), opts.Accept) {
				t.Errorf("error = %v, want a usage error naming the file", err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		opts := opts
		opts.Accept = filepath.Join(t.TempDir(), "none.toml")
		var ue *UsageError
		if _, err := Run(context.Background(), opts); !errors.As(err, &ue) {
			t.Errorf("error = %v, want a usage error", err)
		}
	})
}

// TestCheckRulesDocumented: every rule id the check adds is in
// docs/CONTRACT_CHECK.md's rule tables.
func TestCheckRulesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONTRACT_CHECK.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{ruleAgainstMissing, ruleNoHost, ruleReducerConfig, ruleNoFixtures, ruleFixtureInvalid,
		ruleReducerFailed, ruleOutputRejected, ruleOutputUndeclared, ruleGolden, ruleAcceptUnused} {
		if !strings.Contains(string(doc), "| `"+rule+"` ") {
			t.Errorf("rule %s has no row in docs/CONTRACT_CHECK.md", rule)
		}
	}
}
