package reducertest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recordingTB records what a test helper asked of its test: Skip and
// Fatalf return instead of ending the goroutine.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

// TestSkipNoRust: a missing Rust toolchain skips a test, but fails it when
// RequireRustEnv is set, as .ci/run sets it, so that CI cannot pass with
// the Rust SDK's tests (TestRustSDKReadme, TestRustExampleMatchesGo, ...)
// skipped.
func TestSkipNoRust(t *testing.T) {
	why := errors.New("no cargo on PATH")

	t.Setenv(RequireRustEnv, "")
	var r recordingTB
	SkipNoRust(&r, why)
	if r.skipped != "no cargo on PATH" || r.failed != "" {
		t.Errorf("without %s: skipped %q, failed %q; want skipped with the reason", RequireRustEnv, r.skipped, r.failed)
	}

	t.Setenv(RequireRustEnv, "1")
	r = recordingTB{}
	SkipNoRust(&r, why)
	if r.skipped != "" || !strings.Contains(r.failed, "no cargo on PATH") || !strings.Contains(r.failed, RequireRustEnv) {
		t.Errorf("with %s=1: skipped %q, failed %q; want failed naming the reason and the variable", RequireRustEnv, r.skipped, r.failed)
	}
}
