package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
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
	deadline := time.Now().Add(25 * time.Second)
	for {
		text := (&syncWriter{w: &out}).String()
		frame := text[strings.LastIndex(text, "strata demo:")+1:]
		if strings.Contains(frame, "web      ams, ord") && strings.Contains(frame, "[leak") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not show ord and ams publishing and syd's leaks rejected; last output:\n%s", text[max(0, len(text)-3000):])
		}
		time.Sleep(100 * time.Millisecond)
	}
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
