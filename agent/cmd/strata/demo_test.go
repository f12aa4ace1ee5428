package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/internal/waitfor"
)

// TestDemoRuns runs strata demo briefly from the repository root and checks
// the picture shows both healthy regions publishing and the faulty one's
// leaks rejected.
func TestDemoRuns(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("starts 9 agents and compiles reducers: too slow under -short or -race (.ci/run runs it without -race)")
	}
	t.Chdir("../../..")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, &syncWriter{w: &out}, 12, 20, 0) }()
	waitfor.Until(t, 25*time.Second, "the demo to show ord and ams publishing and syd's leaks rejected", func() error {
		select {
		case err := <-done:
			t.Fatalf("the demo ended early: %v", err)
		default:
		}
		text := (&syncWriter{w: &out}).String()
		frame := text[strings.LastIndex(text, "strata demo:")+1:]
		if strings.Contains(frame, "web      ams, ord") && strings.Contains(frame, "[leak") {
			return nil
		}
		return fmt.Errorf("last output:\n%s", text[max(0, len(text)-3000):])
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDemoRunsForDuration: `strata demo --duration` counts from when the
// demo is up, not from the start of the command: a duration shorter than
// building the reducers and starting 9 agents still runs the demo, shows
// it, and ends with exit status 0.
func TestDemoRunsForDuration(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("starts 9 agents and compiles reducers: too slow under -short or -race (.ci/run runs it without -race)")
	}
	t.Chdir("../../..")
	out, err := runStrata(t, "demo", "--duration", "1500ms", "--machines", "6", "--rate", "5")
	if err != nil {
		t.Fatalf("strata demo --duration 1500ms: %v\n%s", err, out[max(0, len(out)-2000):])
	}
	if !strings.Contains(out, "strata demo:") || !strings.Contains(out, "stopping") {
		t.Errorf("strata demo --duration 1500ms showed no frame, or did not stop:\n%s", out[max(0, len(out)-2000):])
	}
}
