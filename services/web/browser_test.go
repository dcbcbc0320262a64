//go:build browser

package web

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emailscout/emailscout/pkg/events"
)

// browserFixture is the check file of the browser tests: three customers,
// round trips and SMTP checks, two sites.
const browserFixture = `sites: [eu-west, us-east]
defaults:
  interval: 2m
  timeout: 1m
  slow: 20s
  quorum: 2
checks:
  - id: acme-roundtrip
    customer: acme
    name: ACME mail round trip
    kind: roundtrip
    target: webscout@acme.example
  - id: acme-smtp
    customer: acme
    name: ACME mail server
    kind: smtp
    host: mx.acme.example
    tls: starttls
  - id: globex-roundtrip
    customer: globex
    name: Globex mail round trip
    kind: roundtrip
    target: probe@globex.example
  - id: globex-smtp
    customer: globex
    name: Globex mail server
    kind: smtp
    host: mail.globex.example
    tls: starttls
  - id: initech-roundtrip
    customer: initech
    name: Initech mail round trip
    kind: roundtrip
    target: scout@initech.example
`

// populateBrowser publishes an hour of results for every check and site
// (a round trip every 2 minutes, with some spread), a certificate that
// expires soon, and an outage of globex-roundtrip with its incident.
func populateBrowser(t *testing.T, s *stack, now time.Time) {
	t.Helper()
	sites := []string{"eu-west", "us-east"}
	for i := range 30 {
		at := now.Add(time.Duration(i-30) * 2 * time.Minute)
		for j, site := range sites {
			wave := int64((i*37+j*11)%23) * 90
			s.publish(result("acme-roundtrip", events.KindRoundTrip, site, events.StatusOK, 2100+int64(j)*700+wave, at),
				result("initech-roundtrip", events.KindRoundTrip, site, events.StatusOK, 4200+int64(j)*300+wave/2, at))
			g := result("globex-roundtrip", events.KindRoundTrip, site, events.StatusOK, 3300+wave, at)
			if i >= 26 {
				g = result("globex-roundtrip", events.KindRoundTrip, site, events.StatusTimeout, -1, at)
			}
			s.publish(g)
			for _, id := range []string{"acme-smtp", "globex-smtp"} {
				r := result(id, events.KindSMTP, site, events.StatusOK, -1, at)
				r.Timings = events.Timings{DNSMS: 2, ConnectMS: 11 + float64(j*9), GreetingMS: 40 + float64(wave)/30, TLSMS: 28, CapsMS: 6,
					TotalMS: 87 + float64(j*9) + float64(wave)/30}
				days := 74
				if id == "acme-smtp" && site == "us-east" {
					days, r.Status, r.ErrorClass = 12, events.StatusDegraded, "cert_expiring"
				}
				r.TLS = &events.TLSInfo{Version: "TLS1.3", PeerNotAfter: at.Add(time.Duration(days) * 24 * time.Hour), DaysLeft: days}
				s.publish(r)
			}
		}
	}
	s.publish(opened("globex-roundtrip", "globex", "inc-globex-1", "no return from 2 of 2 sites within 1m; retest failed", now.Add(-3*time.Minute)))
}

// browser starts Debian's chromium headless with a fresh profile and the
// flags this closed network needs, and collects every console error and
// uncaught exception of its tab.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path := os.Getenv("SCOUT_CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			t.Fatalf("no chromium to drive (apt-get install chromium, or set SCOUT_CHROMIUM): %v", err)
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // start the browser and the tab
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
				mu.Unlock()
			}
		}
	}()
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// artifacts is where the screenshots go: $SCOUT_ARTIFACTS, or a new
// temporary directory that outlives the test.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SCOUT_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "scout-browser-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// unlabelled is a script that lists the form controls without a label.
const unlabelled = `Array.from(document.querySelectorAll("input:not([type=hidden]), select, textarea"))
  .filter(el => el.labels.length === 0 && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
  .map(el => el.outerHTML)`

// overflow is a script that says how far the page is wider than the
// window, in CSS pixels (0: no horizontal scrolling).
const overflow = `Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth`

// TestBrowser drives the pages in a real headless Chromium against a real
// web service on an embedded NATS server, with events published as the
// evaluator would: the overview loads without console errors; a check
// turns red within one update after its incident.open and green after
// incident.resolved, without a reload; a check page's plot has points;
// the pages fit 390 px; every form control has a label. Screenshots are
// saved to $SCOUT_ARTIFACTS (or a temporary directory, printed).
func TestBrowser(t *testing.T) {
	s := newStack(t, browserFixture)
	now := time.Now().UTC()
	populateBrowser(t, s, now)
	s.start(Config{Flush: 200 * time.Millisecond, Recent: 60, PublicCustomers: []string{"acme"}}, false)
	ctx, consoleProblems := browser(t)
	dir := artifacts(t)
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(what, script string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](script))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}

	// Sign in through the form; the login page's field has its label.
	run("open the login page", chromedp.Navigate(s.srv.URL+"/login?next=/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if got := eval("labels on /login", unlabelled); len(got.([]any)) != 0 {
		t.Errorf("/login: form controls without a label: %v", got)
	}
	run("sign in", chromedp.SetValue(chromedp.CSS("#token"), testToken), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#checks")))
	run("the live stream", chromedp.Poll[chromedp.Void](`document.getElementById("live-status").textContent.startsWith("Live updates: on")`,
		chromedp.WithPollingTimeout(15*time.Second)))
	if got := eval("labels on /", unlabelled); len(got.([]any)) != 0 {
		t.Errorf("/: form controls without a label: %v", got)
	}
	if rows := eval("rows", `document.querySelectorAll("#checks tbody tr.row").length`); rows != float64(5) {
		t.Errorf("the overview shows %v rows, want 5", rows)
	}
	if first := eval("first row", `document.querySelector("#checks tbody tr").id`); first != "row-globex-roundtrip" {
		t.Errorf("the first row is %v, want the open incident's check", first)
	}
	screenshot(t, ctx, dir, "overview.png")

	// Red within one update after incident.open, without a reload.
	eval("mark the page", `window.scoutMark = "no reload"`)
	o := opened("acme-roundtrip", "acme", "inc-acme-1", "no return from 2 of 2 sites within 1m; retest failed", time.Now().UTC())
	s.publish(o)
	run("acme-roundtrip turns red", chromedp.Poll[chromedp.Void](
		`document.querySelector("#row-acme-roundtrip").dataset.state === "down" && window.scoutMark === "no reload"`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if label := eval("badge", `document.querySelector("#row-acme-roundtrip .badge").textContent.trim()`); label != "Down" {
		t.Errorf("the red badge says %q, want the word Down", label)
	}
	if n := eval("incident list", `document.querySelectorAll("#incidents li").length`); n != float64(2) {
		t.Errorf("%v open incidents listed, want 2", n)
	}
	screenshot(t, ctx, dir, "overview-incident.png")

	// Green after incident.resolved, still without a reload.
	later := time.Now().UTC()
	s.publish(result("acme-roundtrip", events.KindRoundTrip, "eu-west", events.StatusOK, 2400, later),
		result("acme-roundtrip", events.KindRoundTrip, "us-east", events.StatusOK, 2900, later), resolved(o, later))
	run("acme-roundtrip turns green", chromedp.Poll[chromedp.Void](
		`document.querySelector("#row-acme-roundtrip").dataset.state === "up" && window.scoutMark === "no reload"`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if label := eval("badge", `document.querySelector("#row-acme-roundtrip .badge").textContent.trim()`); label != "Up" {
		t.Errorf("the green badge says %q, want the word Up", label)
	}

	// A check page: its plot has points.
	run("open a check page", chromedp.Navigate(s.srv.URL+"/checks/acme-roundtrip"), chromedp.WaitVisible(chromedp.CSS("#plot-day svg")))
	if n := eval("points", `document.querySelectorAll("#plot-day svg circle.pt").length`); n.(float64) < 60 {
		t.Errorf("the 24-hour plot has %v points, want at least 60", n)
	}
	screenshot(t, ctx, dir, "check.png")

	// 390 px wide: no horizontal scrolling on any page.
	run("a phone's width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, p := range []struct{ path, shot string }{
		{"/", "overview-390.png"}, {"/checks/acme-smtp", "check-390.png"}, {"/status/acme", "status-390.png"},
	} {
		run("open "+p.path, chromedp.Navigate(s.srv.URL+p.path), chromedp.WaitVisible(chromedp.CSS("main")))
		if over := eval("overflow", overflow); over.(float64) > 0 {
			t.Errorf("%s at 390 px: %v px wider than the window", p.path, over)
		}
		screenshot(t, ctx, dir, p.shot)
	}

	if problems := consoleProblems(); len(problems) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(problems, "\n"))
	}
}
