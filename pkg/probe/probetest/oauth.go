package probetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// OAuth client of a TokenEndpoint.
const (
	ClientID     = "11111111-2222-3333-4444-555555555555"
	ClientSecret = "probe-test~secret"
	// RevokedDescription is what the endpoint says to a wrong client
	// secret, as the Microsoft identity platform does.
	RevokedDescription = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."
)

// TokenEndpoint is a client credentials token endpoint (RFC 6749 section
// 4.4, answered as the Microsoft identity platform does) on httptest: it
// issues "tok-1", "tok-2", ... for ClientID and ClientSecret, valid for an
// hour, and calls OnIssue with each; a wrong secret gets 401
// invalid_client with RevokedDescription.
type TokenEndpoint struct {
	URL string // the token URL

	mu      sync.Mutex
	onIssue func(token string)
	secret  string
	n       int
}

// NewTokenEndpoint starts a TokenEndpoint until the test ends.
func NewTokenEndpoint(t testing.TB, onIssue func(token string)) *TokenEndpoint {
	t.Helper()
	e := &TokenEndpoint{onIssue: onIssue, secret: ClientSecret}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	e.URL = srv.URL + "/tenant/oauth2/v2.0/token"
	return e
}

// Revoke makes the endpoint refuse ClientSecret from now on.
func (e *TokenEndpoint) Revoke() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secret = "rotated by the admin"
}

// Issued is the number of tokens issued.
func (e *TokenEndpoint) Issued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

func (e *TokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		reply(400, map[string]string{"error": "invalid_request"})
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.PostForm.Get("client_id") != ClientID || r.PostForm.Get("client_secret") != e.secret {
		reply(401, map[string]any{"error": "invalid_client", "error_description": RevokedDescription})
		return
	}
	e.n++
	tok := fmt.Sprintf("tok-%d", e.n)
	if e.onIssue != nil {
		e.onIssue(tok)
	}
	reply(200, map[string]any{"token_type": "Bearer", "expires_in": 3600, "access_token": tok})
}
