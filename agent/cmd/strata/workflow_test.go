package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// workflowFile is the GitHub Actions workflow strata ships for the
// contract gate.
const workflowFile = "../../../.github/workflows/contracts.yml"

// TestContractsWorkflow runs the shell commands of the workflow's check
// step, as GitHub would, from this repository's root (the workflow uses
// this checkout's strata), and checks that README.md shows the workflow as
// it is.
func TestContractsWorkflow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs strata")
	}
	for _, tool := range []string{"bash", "git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	data, err := os.ReadFile(workflowFile)
	if err != nil {
		t.Fatal(err)
	}
	workflow := string(data)
	for _, want := range []string{"fetch-depth: 0", "go-version-file: go.mod", "go run ./agent/cmd/strata contract check"} {
		if !strings.Contains(workflow, want) {
			t.Errorf("the workflow lacks %q", want)
		}
	}
	script := runBlock(t, workflow, "strata contract check")

	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	// On a push the workflow compares with HEAD~1; a repository with one
	// commit has none, and HEAD is as good for running the commands.
	base := "HEAD~1"
	if err := exec.Command("git", "-C", root, "rev-parse", "-q", "--verify", base).Run(); err != nil {
		base = "HEAD"
	}
	cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "BASE="+base)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the workflow's commands failed: %v\n%s\nscript:\n%s", err, out, script)
	}
	if !strings.Contains(string(out), "strata contract check: ok (") || !strings.Contains(string(out), "; against git-merge-base:"+base+" = ") {
		t.Errorf("the workflow's check did not pass against %s:\n%s", base, out)
	}

	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+workflow+"```") {
		t.Errorf("README.md does not show %s as it is", workflowFile)
	}
}

// runBlock returns the `run: |` block of the step named name, unindented.
func runBlock(t *testing.T, workflow, name string) string {
	t.Helper()
	i := strings.Index(workflow, "- name: "+name+"\n")
	if i < 0 {
		t.Fatalf("the workflow has no step %q", name)
	}
	m := regexp.MustCompile(`(?m)^( *)run: \|\n`).FindStringSubmatchIndex(workflow[i:])
	if m == nil {
		t.Fatalf("step %q has no `run: |` block", name)
	}
	indent := workflow[i+m[2]:i+m[3]] + "  "
	var lines []string
	for _, line := range strings.SplitAfter(workflow[i+m[1]:], "\n") {
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, indent) {
			break
		}
		lines = append(lines, strings.TrimPrefix(line, indent))
	}
	return strings.Join(lines, "")
}
