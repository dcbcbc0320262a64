package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/services/recorder"
)

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "1d": 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseSince(in); err != nil || got != want {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7days", "-1d", "0h", "week"} {
		if _, err := parseSince(in); err == nil {
			t.Errorf("parseSince(%q) accepted", in)
		}
	}
}

func TestPrintHistory(t *testing.T) {
	p := func(n int64) *int64 { return &n }
	hour := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	err := printHistory(&b, "acme-roundtrip", hour.Add(-time.Hour), hour.Add(2*time.Hour), []recorder.HourlyRTT{
		{Hour: hour, Site: "eu-west", Attempts: 3, Returned: 3, P50MS: p(41234), P90MS: p(44000), P99MS: p(750127)},
		{Hour: hour, Site: "us-east", Attempts: 3, Returned: 0},
		{Hour: hour.Add(time.Hour), Site: "eu-west", Attempts: 1, Returned: 1, P50MS: p(850), P90MS: p(850), P99MS: p(850)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `HOUR (UTC)        SITE     ATTEMPTS  RETURNED  P50    P90    P99
2026-11-29 10:00  eu-west  3         3         41.2s  44s    12m30.1s
2026-11-29 10:00  us-east  3         0         -      -      -
2026-11-29 11:00  eu-west  1         1         850ms  850ms  850ms
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := printHistory(&b, "acme-roundtrip", hour, hour.Add(time.Hour), nil); err != nil || !strings.Contains(b.String(), "no round-trip attempts of acme-roundtrip") {
		t.Errorf("empty: %q %v", b.String(), err)
	}
}

func TestHistoryArguments(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"history", "acme"}, "no ClickHouse: give --clickhouse DSN or set SCOUT_CLICKHOUSE_DSN"},
		{[]string{"history", "Acme!"}, `check id "Acme!" is not`},
		{[]string{"history", "acme", "--since", "soon", "--clickhouse", "clickhouse://127.0.0.1:1/x"}, `--since: "soon" is not`},
		{[]string{"history", "acme", "--clickhouse", "http://127.0.0.1:8123/x"}, `scheme "http" is not supported`},
	} {
		err := run(context.Background(), tt.args, getenv, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
}
