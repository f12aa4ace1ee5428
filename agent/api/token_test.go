package api

import "testing"

// TestPublicMetrics: with public_metrics, /metrics answers without the
// token and every other path but /v1/health still needs it; without it,
// /metrics needs the token.
func TestPublicMetrics(t *testing.T) {
	open := newTestAgent(t, Options{Token: "s3cret", PublicMetrics: true})
	if code, _ := open.call("GET", "/metrics", ""); code != 200 {
		t.Errorf("public_metrics: /metrics without the token = %d, want 200", code)
	}
	if code, _ := open.call("GET", "/v1/status", ""); code != 401 {
		t.Errorf("public_metrics: /v1/status without the token = %d, want 401", code)
	}
	if code, _ := open.call("GET", "/v1/health", ""); code != 200 {
		t.Errorf("/v1/health without the token = %d, want 200", code)
	}
	closed := newTestAgent(t, Options{Token: "s3cret"})
	if code, _ := closed.call("GET", "/metrics", ""); code != 401 {
		t.Errorf("/metrics without the token nor public_metrics = %d, want 401", code)
	}
}

// TestSetToken: a token set while serving replaces the old one at once,
// and can turn authentication on and off.
func TestSetToken(t *testing.T) {
	a := newTestAgent(t, Options{})
	if code, _ := a.call("GET", "/v1/status", ""); code != 200 {
		t.Fatalf("no token configured: %d", code)
	}
	a.srv.SetToken("new")
	if code, _ := a.call("GET", "/v1/status", ""); code != 401 {
		t.Errorf("after SetToken, no token = %d, want 401", code)
	}
	if code, _ := a.call("GET", "/v1/status", "", "Authorization", "Bearer new"); code != 200 {
		t.Errorf("after SetToken, the new token = %d, want 200", code)
	}
	a.srv.SetToken("newer")
	if code, _ := a.call("GET", "/v1/status", "", "Authorization", "Bearer new"); code != 401 {
		t.Errorf("the replaced token = %d, want 401", code)
	}
	a.srv.SetToken("")
	if code, _ := a.call("GET", "/v1/status", ""); code != 200 {
		t.Errorf("after SetToken(\"\"), no token = %d, want 200", code)
	}
}

// The Bearer scheme's name is case-insensitive (RFC 9110, 11.1); the
// token is not, and nothing else passes for it.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	a := newTestAgent(t, Options{Token: "s3cret"})
	for header, want := range map[string]int{
		"Bearer s3cret":  200,
		"bearer s3cret":  200,
		"BEARER s3cret":  200,
		"Bearer  s3cret": 200,
		"Bearer S3CRET":  401,
		"Basic s3cret":   401,
		"Bearers3cret":   401,
		"Bearer ":        401,
		"s3cret":         401,
		"":               401,
	} {
		if code, body := a.call("GET", "/v1/status", "", "Authorization", header); code != want {
			t.Errorf("Authorization %q: %d %s, want %d", header, code, body, want)
		}
	}
}
