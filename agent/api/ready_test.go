package api

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// readiness is a ReadyChecker switched by the test.
type readiness struct{ ready atomic.Bool }

func (r *readiness) Ready() error {
	if r.ready.Load() {
		return nil
	}
	return errors.New("first sync with the region not finished")
}

// /v1/health?ready=1 answers 503 with the checker's message until it is
// ready; plain /v1/health is not affected.
func TestHealthReady(t *testing.T) {
	r := &readiness{}
	a := newTestAgent(t, Options{Ready: r})
	if code, body := a.call("GET", "/v1/health?ready=1", ""); code != 503 || !strings.Contains(body, "first sync with the region not finished") {
		t.Errorf("ready before ready: %d %s", code, body)
	}
	if code, body := a.call("GET", "/v1/health", ""); code != 200 {
		t.Errorf("liveness while not ready: %d %s", code, body)
	}
	r.ready.Store(true)
	if code, body := a.call("GET", "/v1/health?ready=1", ""); code != 200 {
		t.Errorf("ready after ready: %d %s", code, body)
	}
	// No checker: ready whenever healthy.
	b := newTestAgent(t, Options{})
	if code, body := b.call("GET", "/v1/health?ready=1", ""); code != 200 {
		t.Errorf("ready without a checker: %d %s", code, body)
	}
}
