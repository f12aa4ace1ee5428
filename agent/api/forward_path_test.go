package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestSignedPathReachesTheKey: the path a non-gateway forwards a global
// read to reaches the gateway's one-key route with the key intact, for
// keys that path cleaning would otherwise rewrite ("." became a list, ".."
// a 404) and keys with a slash.
func TestSignedPathReachesTheKey(t *testing.T) {
	var gotRecord, gotKey, gotRoute string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/global/{record}", func(w http.ResponseWriter, r *http.Request) {
		gotRoute, gotRecord = "list", r.PathValue("record")
	})
	mux.HandleFunc("GET /v1/global/{record}/{key}", func(w http.ResponseWriter, r *http.Request) {
		gotRoute, gotRecord, gotKey = "get", r.PathValue("record"), r.PathValue("key")
	})
	for _, key := range []string{"web", ".", "..", "a/b", "a b%", "?#"} {
		gotRoute, gotRecord, gotKey = "", "", ""
		req := httptest.NewRequest(http.MethodGet, signedPath("app_placements", key, false), nil)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if gotRoute != "get" || gotRecord != "app_placements" || gotKey != key {
			t.Errorf("key %q: route %q record %q key %q (status %d), want the get route with the key intact",
				key, gotRoute, gotRecord, gotKey, rec.Code)
		}
	}
}
