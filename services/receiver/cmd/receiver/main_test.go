package main

import (
	"context"
	"io"
	"strings"
	"testing"
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
