package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestConfigurationErrors: a bad environment or a missing check file stops
// the recorder before it connects anywhere, naming what is wrong.
func TestConfigurationErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no dsn", map[string]string{}, []string{"SCOUT_CLICKHOUSE_DSN"}},
		{"missing check file", map[string]string{"SCOUT_CHECKS_FILE": "/nonexistent/checks.yaml", "SCOUT_CLICKHOUSE_DSN": "clickhouse://127.0.0.1:1/x"}, []string{"/nonexistent/checks.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := run(ctx, nil, func(k string) string { return tc.env[k] }, io.Discard)
			if err == nil {
				t.Fatal("run started with a bad environment")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}
