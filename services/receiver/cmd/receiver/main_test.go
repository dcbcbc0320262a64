package main

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/emersion/go-imap/v2"
)

// TestConfigurationErrors: a bad environment stops the receiver before it
// connects anywhere, with every problem named by its variable.
func TestConfigurationErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"empty", map[string]string{}, []string{"SCOUT_SITE", "SCOUT_PROBE_KEYS"}},
		{"bad values", map[string]string{
			"SCOUT_SITE": "EU", "SCOUT_PROBE_KEYS": "acme:k1:c2hvcnQ", "SCOUT_RETURN_ADDRESS": "r@monitor.example",
			"SCOUT_RETURN_ADDRESSES": "r@monitor.example", "SCOUT_RELAY_ADDR": "relay.monitor.example:587",
		}, []string{`SCOUT_SITE="EU"`}},
		{"short key", map[string]string{
			"SCOUT_SITE": "eu", "SCOUT_PROBE_KEYS": "acme:k1:c2hvcnQ", "SCOUT_RETURN_ADDRESS": "r@monitor.example",
			"SCOUT_RETURN_ADDRESSES": "r@monitor.example", "SCOUT_RELAY_ADDR": "relay.monitor.example:587",
		}, []string{"SCOUT_PROBE_KEYS", "secret is 5 bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), nil, func(k string) string { return tc.env[k] }, io.Discard)
			if err == nil {
				t.Fatal("run started with a bad environment")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			if strings.Contains(err.Error(), "c2hvcnQ") {
				t.Errorf("error reveals the key: %v", err)
			}
		})
	}
}

// TestCheckLogin: "receiver check-login" logs in to the return mailbox
// with the receiver's own environment (here OAuth client credentials from
// a token endpoint on loopback, go-imap's server), says how many messages
// it sees and exits 0; with the secret revoked it names the provider's
// error and fails, without the secret in its output.
func TestCheckLogin(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}})
	tokens := probetest.NewTokenEndpoint(t, srv.AllowToken)
	srv.Deliver([]byte("From: a@example.org\r\nSubject: lunch\r\n\r\nhi\r\n"), time.Time{})
	host, port, _ := net.SplitHostPort(srv.Addr)
	env := map[string]string{
		"SCOUT_SITE": "eu-west", "SCOUT_RETURN_ADDRESSES": "scout@eu-west.monitor.example",
		"SCOUT_PROBE_KEYS": "acme:k1:" + base64.StdEncoding.EncodeToString(make([]byte, 32)), "SCOUT_RECEIVER_MODE": "imap", "SCOUT_RECEIVER_IMAP_SERVER": host, "SCOUT_RECEIVER_IMAP_PORT": port,
		"SCOUT_RECEIVER_IMAP_TLS": "none", "SCOUT_RECEIVER_IMAP_USER": mailtest.IMAPUser,
		"SCOUT_RECEIVER_IMAP_OAUTH_PROVIDER": "microsoft", "SCOUT_RECEIVER_IMAP_OAUTH_TOKEN_URL": tokens.URL,
		"SCOUT_RECEIVER_IMAP_OAUTH_CLIENT_ID": probetest.ClientID, "SCOUT_RECEIVER_IMAP_OAUTH_CLIENT_SECRET": probetest.ClientSecret,
	}
	var out strings.Builder
	err := run(context.Background(), []string{"check-login"}, func(k string) string { return env[k] }, &out)
	if err != nil || !strings.Contains(out.String(), "ok           logged in; INBOX holds 1 messages") ||
		!strings.Contains(out.String(), "OAuth microsoft (XOAUTH2)") {
		t.Errorf("check-login: %v\n%s", err, out.String())
	}

	tokens.Revoke()
	out.Reset()
	err = run(context.Background(), []string{"check-login"}, func(k string) string { return env[k] }, &out)
	if !errors.Is(err, receiver.ErrLoginFailed) || !strings.Contains(out.String(), "FAILED       at auth (credentials)") ||
		!strings.Contains(out.String(), "AADSTS7000215") {
		t.Errorf("revoked: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), probetest.ClientSecret) {
		t.Errorf("the secret is in the output:\n%s", out.String())
	}
}
