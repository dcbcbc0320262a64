package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
)

// populate publishes results for every check and site, an SMTP failure
// with its evidence, and an open incident of globex-roundtrip.
func populate(t *testing.T, s *stack) {
	t.Helper()
	now := time.Now().UTC()
	for i := range 4 {
		at := now.Add(time.Duration(i-4) * time.Minute)
		s.publish(result("acme-roundtrip", events.KindRoundTrip, "eu-west", events.StatusOK, int64(1000+100*i), at),
			result("acme-roundtrip", events.KindRoundTrip, "us-east", events.StatusSlow, int64(11000+100*i), at),
			result("globex-roundtrip", events.KindRoundTrip, "eu-west", events.StatusTimeout, -1, at),
			result("globex-roundtrip", events.KindRoundTrip, "us-east", events.StatusTimeout, -1, at))
		ok := result("acme-smtp", events.KindSMTP, "eu-west", events.StatusOK, -1, at)
		ok.Timings = events.Timings{ConnectMS: 2, GreetingMS: 8, TLSMS: 20, TotalMS: 41}
		ok.TLS = &events.TLSInfo{Version: "TLS1.3", PeerNotAfter: now.Add(60 * 24 * time.Hour), DaysLeft: 60}
		bad := result("acme-smtp", events.KindSMTP, "us-east", events.StatusFailed, -1, at)
		bad.ErrorClass, bad.Phase, bad.Error = "refused", "greeting", "greeting: 554 5.7.1 go away (10.1.2.3:25)"
		bad.Reply = &events.SMTPReply{Code: 554, Enhanced: "5.7.1", Text: "go away"}
		bad.Timings = events.Timings{ConnectMS: 2, TotalMS: 5}
		bad.Summary = "10.1.2.3:25 refused at greeting: 554 5.7.1 go away"
		bad.Evidence = &events.Evidence{Dialogue: []string{"S: 554 5.7.1 go away", "C: QUIT", "S: 221 2.0.0 Bye"}}
		s.publish(ok, bad)
	}
	// The newest globex attempt at eu-west bounced: the whole evidence.
	b := result("globex-roundtrip", events.KindRoundTrip, "eu-west", events.StatusFailed, -1, now)
	b.ErrorClass, b.Summary = "bounced", "mx1.globex.example refused the probe: 550 5.1.1 <probe@globex.example>: User unknown"
	b.Warnings = []string{"the return path was rewritten"}
	delay := int64(800)
	b.Evidence = &events.Evidence{
		Submission: &events.Submission{Hop: "127.0.0.1:25", Server: "relay.monitor.example", TLSVersion: "TLS1.3", QueueID: "4XyZ",
			AcceptedAt: now, Transcript: []string{"S: 220 relay.monitor.example ESMTP", "C: AUTH PLAIN ****"}},
		Deferred: &events.SMTPReply{Code: 451, Enhanced: "4.7.1", Text: "greylisted"},
		Bounce: &events.Bounce{Action: "failed", Status: "5.1.1", Diagnostic: "550 5.1.1 <probe@globex.example>: User unknown",
			RemoteMTA: "mx1.globex.example", ReportingMTA: "relay.monitor.example", FinalRecipient: "probe@globex.example", Parser: "rfc3464", Summary: b.Summary},
		Hops: []events.Hop{{From: "relay", By: "mx1.globex.example", With: "ESMTPS", ID: "A1", At: now}, {By: "mx2", At: now, DelayMS: &delay}},
	}
	s.publish(b)
	s.publish(opened("globex-roundtrip", "globex", "inc-globex", "no return from 2 of 2 sites; retest failed", now.Add(-time.Minute)))
	testkit.WaitFor(t, "the events to arrive", func() bool { return s.stateOf("globex-roundtrip") == StateDown })
}

func TestPages(t *testing.T) {
	s := newStack(t, fixture)
	s.start(Config{}, false)
	populate(t, s)

	code, body := s.get("/", true)
	if code != http.StatusOK {
		t.Fatalf("GET /: %d", code)
	}
	for _, want := range []string{`<label for="f-customer">Customer</label>`, `<label for="f-state">State</label>`,
		`id="row-acme-roundtrip"`, `id="row-acme-smtp"`, "no return from 2 of 2 sites; retest failed", "rtt 1.3 s",
		"connect 2 ms · greeting 8 ms · tls 20 ms · total 41 ms", "cert 60 d left", "failed: refused at greeting", `<b data-count="down">1</b>`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / lacks %q", want)
		}
	}
	// Open incidents first: the incident section and globex's row come
	// before acme's rows.
	if i, j := strings.Index(body, `id="row-globex-roundtrip"`), strings.Index(body, `id="row-acme-roundtrip"`); i < 0 || i > j {
		t.Error("the check with the open incident is not the first row")
	}

	for _, tc := range []struct {
		query        string
		want, absent []string
	}{
		{"customer=globex", []string{"row-globex-roundtrip"}, []string{"row-acme-roundtrip", "row-acme-smtp"}},
		{"state=warning", []string{"row-acme-roundtrip", "row-acme-smtp"}, []string{"row-globex-roundtrip"}},
		{"customer=acme&state=down", []string{"No check matches"}, []string{"row-"}},
	} {
		_, body := s.get("/?"+tc.query, true)
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("/?%s lacks %s", tc.query, w)
			}
		}
		for _, a := range tc.absent {
			if strings.Contains(body, `id="`+a) {
				t.Errorf("/?%s shows %s", tc.query, a)
			}
		}
	}

	code, body = s.get("/checks/acme-smtp", true)
	if code != http.StatusOK {
		t.Fatalf("GET /checks/acme-smtp: %d", code)
	}
	for _, want := range []string{`<circle class="pt"`, "Total dialogue time, last 24 hours", "<code>554 5.7.1 go away</code>",
		"greeting: 554 5.7.1 go away", "60 days left", "From memory (the last 50 results per site)"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /checks/acme-smtp lacks %q", want)
		}
	}
	if n := strings.Count(body, "<summary>Evidence</summary>"); n != 4 || !strings.Contains(body, "dialogue\n  S: 554 5.7.1 go away\n  C: QUIT") {
		t.Errorf("GET /checks/acme-smtp: %d evidence blocks, want the dialogue of each of the 4 failures", n)
	}
	if n := strings.Count(body, `<circle class="pt"`); n != 16 { // 4 results × 2 sites, in each of 2 plots
		t.Errorf("acme-smtp's plots have %d points, want 16", n)
	}
	_, body = s.get("/checks/globex-roundtrip", true)
	for _, want := range []string{"mx1.globex.example refused the probe: 550 5.1.1 &lt;probe@globex.example&gt;: User unknown",
		"warning: the return path was rewritten", "submitted  to relay.monitor.example (127.0.0.1:25, TLS1.3), queued as 4XyZ",
		"bounce     failed, status 5.1.1, reported by relay.monitor.example", "hop 2      from ? by mx2"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /checks/globex-roundtrip lacks %q", want)
		}
	}
	if code, _ := s.get("/checks/nope", true); code != http.StatusNotFound {
		t.Errorf("GET /checks/nope: %d", code)
	}
}

// TestAuth: without credentials every page, /events and the API answer
// 401; a bearer token, the login cookie or a trusted proxy's header
// admit; the token never shows in the logs or the pages.
func TestAuth(t *testing.T) {
	protected := []string{"/", "/checks/acme-roundtrip", "/events", "/api/v1/overview", "/api/v1/checks",
		"/api/v1/checks/acme-roundtrip", "/api/v1/incidents"}
	s := newStack(t, fixture)
	s.start(Config{AuthHeader: "X-Forwarded-User", TrustedProxies: []string{"127.0.0.1/32"}, Token: testToken}, false)
	populate(t, s)
	client := s.srv.Client()
	do := func(method, path string, hdr map[string]string, form url.Values) *http.Response {
		t.Helper()
		var req *http.Request
		if form != nil {
			req, _ = http.NewRequest(method, s.srv.URL+path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, s.srv.URL+path, nil)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		c := *client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, p := range protected {
		for name, hdr := range map[string]map[string]string{
			"nothing":       nil,
			"a wrong token": {"Authorization": "Bearer not-it"},
			"an empty user": {"X-Forwarded-User": " "},
		} {
			if resp := do("GET", p, hdr, nil); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s with %s: %d, want 401", p, name, resp.StatusCode)
			}
		}
		if p == "/events" {
			continue // a stream: its 200 is checked in TestEventsPushChangedRows
		}
		for name, hdr := range map[string]map[string]string{
			"the token":          {"Authorization": "Bearer " + testToken},
			"the proxy's header": {"X-Forwarded-User": "alice@example.com"},
		} {
			if resp := do("GET", p, hdr, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s with %s: %d, want 200", p, name, resp.StatusCode)
			}
		}
	}
	if resp := do("GET", "/", nil, nil); resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}

	// The login form.
	if resp := do("POST", "/login", nil, url.Values{"token": {"wrong"}, "next": {"/checks/acme-smtp"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with a wrong token: %d", resp.StatusCode)
	}
	resp := do("POST", "/login", nil, url.Values{"token": {testToken}, "next": {"/checks/acme-smtp"}})
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/checks/acme-smtp" || cookie == nil ||
		!cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || strings.Contains(cookie.Value, testToken) {
		t.Fatalf("login: %d %s %+v", resp.StatusCode, resp.Header.Get("Location"), cookie)
	}
	if resp := do("GET", "/", map[string]string{"Cookie": sessionCookie + "=" + cookie.Value}, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET / with the session cookie: %d", resp.StatusCode)
	}
	if resp := do("POST", "/login", nil, url.Values{"token": {testToken}, "next": {"//evil.example/"}}); resp.Header.Get("Location") != "/" {
		t.Errorf("login redirects off-site: %s", resp.Header.Get("Location"))
	}

	for _, p := range protected[:2] {
		if _, body := s.get(p, true); strings.Contains(body, testToken) {
			t.Errorf("GET %s shows the token", p)
		}
	}
	if strings.Contains(s.logs.String(), testToken) {
		t.Error("the token is in the logs")
	}
}

// TestProxyHeaderOnlyFromTrustedAddresses: the auth proxy's header from
// an address outside SCOUT_WEB_TRUSTED_PROXIES admits nobody.
func TestProxyHeaderOnlyFromTrustedAddresses(t *testing.T) {
	s := newStack(t, fixture)
	s.start(Config{AuthHeader: "X-Forwarded-User", TrustedProxies: []string{"10.0.0.0/8"}}, false)
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/api/v1/overview", nil)
	req.Header.Set("X-Forwarded-User", "mallory")
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the header from 127.0.0.1 with only 10.0.0.0/8 trusted: %d, want 401", resp.StatusCode)
	}
}

// TestPublicStatusPage: a customer's public page shows its checks up or
// down, never another customer's check and nothing internal; a customer
// without a public page is 404.
func TestPublicStatusPage(t *testing.T) {
	s := newStack(t, fixture)
	s.start(Config{PublicCustomers: []string{"acme", "globex"}}, false)
	populate(t, s)
	code, body := s.get("/status/acme", false)
	if code != http.StatusOK {
		t.Fatalf("GET /status/acme: %d", code)
	}
	for _, want := range []string{"ACME mail round trip", "ACME mail server", "Degraded"} {
		if !strings.Contains(body, want) {
			t.Errorf("/status/acme lacks %q", want)
		}
	}
	for _, never := range []string{"Globex", "globex", "webscout@acme.example", "mx.acme.example", "eu-west", "us-east",
		"554", "go away", "10.1.2.3", "refused", "rtt", "acme-roundtrip", "live.js", "/api/"} {
		if strings.Contains(body, never) {
			t.Errorf("/status/acme shows %q", never)
		}
	}
	_, body = s.get("/status/globex", false)
	if !strings.Contains(body, "Outage") || strings.Contains(body, "ACME") || strings.Contains(body, "no return") {
		t.Errorf("/status/globex: %s", body)
	}
	if code, _ := s.get("/status/initech", false); code != http.StatusNotFound {
		t.Errorf("GET /status/initech (not public): %d", code)
	}
}
