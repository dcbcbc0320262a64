package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/web"
)

// TestStatusTable: the overview as the web service encodes it
// (web.Overview) is printed one line per check and site, the open
// incident under its check, and the exit code is the worst state; the
// filters and the token reach the API; a 401 says what to give.
func TestStatusTable(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *time.Time { v := now.Add(-ago); return &v }
	rtt := int64(812)
	ov := web.Overview{GeneratedAt: now, Counts: web.Counts{Down: 1, Up: 1},
		Checks: []web.CheckSummary{{
			ID: "acme-mx", Kind: "roundtrip", Target: "webscout@acme.example", State: web.StateDown,
			Incident: &web.Incident{ID: "inc-abc123", Severity: "critical", Reason: "no return within 10m0s at 2 of 2 sites", Since: now.Add(-7 * time.Minute)},
			Sites: []web.SiteSummary{
				{Site: "eu-west", Verdict: "down", LastStatus: events.StatusTimeout, LastAttemptAt: at(3 * time.Minute)},
				{Site: "us-east", Verdict: "down", LastStatus: events.StatusFailed, ErrorClass: "bounced", LastAttemptAt: at(90 * time.Second)},
			},
		}, {
			ID: "acme-imap", Kind: "imap", Target: "imap.acme.example:993", State: web.StateUp,
			Sites: []web.SiteSummary{{Site: "eu-west", Verdict: "up", LastStatus: events.StatusOK, RTTMS: &rtt, LastAttemptAt: at(20 * time.Second)}},
		}}}
	var gotQuery, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/overview" {
			http.NotFound(w, r)
			return
		}
		gotQuery, gotAuth = r.URL.RawQuery, r.Header.Get("Authorization")
		if gotAuth != "Bearer team-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(ov)
	}))
	defer srv.Close()

	exec := func(args ...string) (int, string) {
		cmd := newStatusCmd(func(k string) string { return map[string]string{"SCOUT_WEB_TOKEN": "team-token"}[k] }, srv.Client(), func() time.Time { return now })
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"--url", srv.URL + "/"}, args...))
		err := cmd.ExecuteContext(context.Background())
		if err != nil && exitCode(err) == statusFailed {
			out.WriteString("error: " + err.Error())
		}
		code := 0
		if err != nil {
			code = exitCode(err)
		}
		return code, out.String()
	}
	code, out := exec("--customer", "acme", "--state", "down")
	if code != statusDown {
		t.Errorf("exit %d, want %d (a check down)", code, statusDown)
	}
	if gotQuery != "customer=acme&state=down" {
		t.Errorf("query %q", gotQuery)
	}
	want := `2 checks: 1 down, 0 warning, 1 up, 0 unknown   (as of 2026-12-05 12:00:00Z)

STATE  CHECK      KIND       TARGET                 SITE     VERDICT  LAST              TIME    AGO
DOWN   acme-mx    roundtrip  webscout@acme.example  eu-west  down     timeout           -       3m
                                                    us-east  down     failed (bounced)  -       1m
  -> critical incident inc-abc123 since 2026-12-05 11:53:00Z: no return within 10m0s at 2 of 2 sites
UP     acme-imap  imap       imap.acme.example:993  eu-west  up       ok                812 ms  20s
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}

	code, out = exec("--json")
	var back web.Overview
	if err := json.Unmarshal([]byte(out), &back); err != nil || code != statusDown || len(back.Checks) != 2 {
		t.Errorf("--json: exit %d, %v\n%s", code, err, out)
	}

	code, out = exec("--token", "wrong")
	if code != statusFailed || !strings.Contains(out, "401 Unauthorized: give the web service's token with --token or $SCOUT_WEB_TOKEN") {
		t.Errorf("401: exit %d %q", code, out)
	}
	code, out = exec("--url", "127.0.0.1:9090")
	if code != statusFailed || !strings.Contains(out, `--url "127.0.0.1:9090": give the web service's base URL`) {
		t.Errorf("bad URL: exit %d %q", code, out)
	}
}
