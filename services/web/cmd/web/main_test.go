package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestConfigurationErrors: a bad environment or a missing check file stops
// the web service before it connects anywhere, naming what is wrong and
// never the token.
func TestConfigurationErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no credentials", map[string]string{}, []string{"SCOUT_WEB_TOKEN or SCOUT_WEB_AUTH_HEADER is required"}},
		{"header without proxies", map[string]string{"SCOUT_WEB_AUTH_HEADER": "X-Forwarded-User"}, []string{"SCOUT_WEB_TRUSTED_PROXIES"}},
		{"bad proxy", map[string]string{"SCOUT_WEB_TOKEN": "t0k3n-secret", "SCOUT_WEB_AUTH_HEADER": "X-Forwarded-User", "SCOUT_WEB_TRUSTED_PROXIES": "10.0.0.0/8,the-proxy"},
			[]string{`SCOUT_WEB_TRUSTED_PROXIES: "the-proxy"`}},
		{"bad public customer", map[string]string{"SCOUT_WEB_TOKEN": "t0k3n-secret", "SCOUT_WEB_PUBLIC_CUSTOMERS": "acme,Globex Inc"}, []string{`"Globex Inc"`}},
		{"bad numbers", map[string]string{"SCOUT_WEB_TOKEN": "t0k3n-secret", "SCOUT_WEB_RECENT_RESULTS": "0", "SCOUT_WEB_FLUSH_INTERVAL": "-1s"},
			[]string{"SCOUT_WEB_RECENT_RESULTS=0", "SCOUT_WEB_FLUSH_INTERVAL=-1s"}},
		{"malformed replay", map[string]string{"SCOUT_WEB_TOKEN": "t0k3n-secret", "SCOUT_WEB_REPLAY": "a day"}, []string{`SCOUT_WEB_REPLAY="a day"`}},
		{"password in the ClickHouse URL", map[string]string{"SCOUT_WEB_TOKEN": "t0k3n-secret", "SCOUT_CLICKHOUSE_HTTP_URL": "http://u:pw@127.0.0.1:8123/"},
			[]string{"SCOUT_CLICKHOUSE_HTTP_PASSWORD"}},
		{"malformed ClickHouse URL", map[string]string{"SCOUT_WEB_TOKEN": "t0k3n-secret", "SCOUT_CLICKHOUSE_HTTP_URL": "http://u:pw@127.0.0.1:x/"},
			[]string{"SCOUT_CLICKHOUSE_HTTP_URL is not a URL"}},
		{"native ClickHouse URL", map[string]string{"SCOUT_WEB_TOKEN": "t0k3n-secret", "SCOUT_CLICKHOUSE_HTTP_URL": "clickhouse://127.0.0.1:9000/scout"},
			[]string{`scheme "clickhouse"`}},
		{"missing check file", map[string]string{"SCOUT_WEB_TOKEN": "t0k3n-secret", "SCOUT_CHECKS_FILE": "/nonexistent/checks.yaml"}, []string{"/nonexistent/checks.yaml"}},
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
			if strings.Contains(err.Error(), "t0k3n-secret") || strings.Contains(err.Error(), "pw@") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}
