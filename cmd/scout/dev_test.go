package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
)

// TestDevRoundTrips runs `scout dev` (every service, embedded NATS, the
// demo mail server and its reflector) with the repository's dev check file:
// probes go out, come back and become ok verdicts, and it exits 0.
func TestDevRoundTrips(t *testing.T) {
	t.Parallel() // each run has its own data directory, NATS and ports
	var out bytes.Buffer
	err := run(context.Background(), []string{"dev", "--checks", "../../deploy/dev/checks.yaml", "--data-dir", t.TempDir(),
		"--duration", "12s", "--http", ""}, os.Getenv, &out)
	if err != nil {
		t.Fatalf("scout dev: %v\n%s", err, out.String())
	}
	ok := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  (acme|globex)-roundtrip +dev-[ab] +#1 +ok +rtt_ms=\d+$`)
	if n := len(ok.FindAllString(out.String(), -1)); n < 4 {
		t.Errorf("%d ok lines, want at least one per check and site:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "Summary after") || strings.Contains(out.String(), "monitor_error") {
		t.Errorf("output:\n%s", out.String())
	}
	// The dev file's service checks reach the demo server's SMTP, IMAP and
	// POP3 sides over STARTTLS, with a login for IMAP and POP3.
	for _, kind := range []string{"smtp", "imap", "pop3"} {
		svc := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  acme-` + kind + ` +dev-[ab] +#1 +ok +total_ms=[0-9.]+ TLS1\.3 cert 89d$`)
		if n := len(svc.FindAllString(out.String(), -1)); n < 2 {
			t.Errorf("%d ok lines for acme-%s, want at least one per site:\n%s", n, kind, out.String())
		}
	}
}

// TestDevServiceChecks is `scout dev --break acme-smtp` on service checks
// of every kind: while the break lasts the demo server answers EHLO with
// 554, so acme-smtp fails at both sites, is retested and an incident opens
// whose reason names SMTP, the phase and the reply; IMAP and POP3 stay ok.
// When the break ends, SMTP passes again and the incident resolves.
func TestDevServiceChecks(t *testing.T) {
	t.Parallel() // each run has its own data directory, NATS and ports
	var out bytes.Buffer
	err := run(context.Background(), []string{"dev", "--checks", "testdata/service-checks.yaml", "--data-dir", t.TempDir(),
		"--break", "acme-smtp", "--break-for", "7s", "--duration", "14s", "--http", ""}, os.Getenv, &out)
	if err != nil {
		t.Fatalf("scout dev: %v\n%s", err, out.String())
	}
	s := out.String()
	flow := strings.Index(s, "-- demo server: acme-smtp answers normally again")
	if flow < 0 {
		t.Fatalf("the break never ended:\n%s", s)
	}
	before, after := s[:flow], s[flow:]
	count := func(text, pattern string) int {
		return len(regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  `+pattern).FindAllString(text, -1))
	}
	for _, kind := range []string{"imap", "pop3"} {
		if n := count(before, `acme-`+kind+` +t-[ab] +#1 +ok +total_ms=[0-9.]+ TLS1\.3 cert 89d$`); n < 2 {
			t.Errorf("%d ok lines for acme-%s during the break, want at least one per site", n, kind)
		}
	}
	if n := count(before, `acme-smtp +t-[ab] +#\d[ a-z]* +failed +capabilities: 554 5\.7\.1 Service unavailable \[refused, total_ms=[0-9.]+\]$`); n < 2 {
		t.Errorf("%d failed acme-smtp lines during the break, want at least one per site", n)
	}
	for _, want := range []string{
		"INCIDENT OPEN     acme-smtp  critical: SMTP capabilities failed at 2 of 2 sites: 554 5.7.1 Service unavailable; retest failed",
		": DOWN ACME mail server: SMTP capabilities failed at 2 of 2 sites: 554 5.7.1 Service unavailable",
	} {
		if !strings.Contains(before, want) {
			t.Errorf("before the break ended, missing %q", want)
		}
	}
	if n := count(after, `acme-smtp +t-[ab] +#1 +ok +total_ms=[0-9.]+ TLS1\.3 cert 89d$`); n < 2 {
		t.Errorf("%d ok acme-smtp lines after the break, want at least one per site", n)
	}
	if !regexp.MustCompile(`INCIDENT RESOLVED acme-smtp  outage \d+s \(since the first failed attempt\), open \d+s: [12] of 2 sites answer again`).MatchString(after) {
		t.Error("after the break ended, no resolution of the acme-smtp incident")
	}
	if strings.Count(s, "INCIDENT OPEN") != 1 || strings.Contains(s, "monitor_error") {
		t.Error("want exactly one incident (acme-smtp's) and no monitor_error")
	}
	// The header shows how to check the demo SMTP server by hand, with the
	// demo certificate's authority written to the data directory.
	m := regexp.MustCompile(`(?m)^By hand, the demo SMTP server of acme-smtp: go run \./cmd/scout check smtp 127\.0\.0\.1:\d+ --ca (\S+) -v$`).FindStringSubmatch(s)
	if m == nil {
		t.Error("no scout check line for the demo SMTP server in the header")
	} else if pemData, err := os.ReadFile(m[1]); err != nil || !strings.HasPrefix(string(pemData), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("%s: %v %.40q, want the demo authority's PEM", m[1], err, pemData)
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
}

// TestDevBreakShowsIncident is `scout dev --break`: the demo server swallows
// one check's probes, so its attempts time out, are retested and confirmed
// at the other site, an incident opens and the SMS text is shown; when the
// break ends the incident resolves with its SMS.
func TestDevBreakShowsIncident(t *testing.T) {
	t.Parallel() // each run has its own data directory, NATS and ports
	var out bytes.Buffer
	start := time.Now()
	err := run(context.Background(), []string{"dev", "--checks", "testdata/fast-checks.yaml", "--data-dir", t.TempDir(),
		"--break", "acme-roundtrip", "--break-for", "10s", "--duration", "20s", "--http", ""}, os.Getenv, &out)
	if err != nil {
		t.Fatalf("scout dev: %v\n%s", err, out.String())
	}
	s := out.String()
	// Before the break ends: timeouts, a failed retest, the incident and
	// its SMS (the SMS line and the incident line come from different
	// goroutines, so only their phase is asserted, not their order).
	flow := strings.Index(s, "-- demo server: the probes of acme-roundtrip flow again")
	if flow < 0 {
		t.Fatalf("the break never ended:\n%s", s)
	}
	before, after := s[:flow], s[flow:]
	for _, want := range []string{
		"timeout       no return within 2s",
		"retest  timeout",
		"INCIDENT OPEN     acme-roundtrip  critical: no return from 2 of 2 sites; retest failed",
		"SMS to ACME on-call +15555550100 [GSM-7",
		": DOWN ACME mail: no return from 2 of 2 sites",
	} {
		if !strings.Contains(before, want) {
			t.Errorf("before the break ended, missing %q", want)
		}
	}
	for _, want := range []string{"INCIDENT RESOLVED acme-roundtrip", ": RESOLVED ACME mail: OK again"} {
		if !strings.Contains(after, want) {
			t.Errorf("after the break ended, missing %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
	if strings.Count(s, "INCIDENT OPEN") != 1 || strings.Contains(s, "INCIDENT OPEN     globex") {
		t.Errorf("exactly one incident expected, for acme only:\n%s", s)
	}
	t.Logf("ran %v", time.Since(start).Round(time.Second))
}

// TestDevBadCheckFileIsExit2: a check file that does not load stops scout
// dev with check-config's exit status, 2, and the loader's message.
func TestDevBadCheckFileIsExit2(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "checks.yaml")
	if err := os.WriteFile(bad, []byte("defaults:\n  intervall: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{bad, filepath.Join(t.TempDir(), "missing.yaml")} {
		err := run(context.Background(), []string{"dev", "--checks", file, "--data-dir", t.TempDir()}, os.Getenv, &bytes.Buffer{})
		if code := exitCode(err); code != 2 || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: exit %d, err %v; want 2 and the file named", file, code, err)
		}
	}
}

// TestMistypedFlagIsExit2: a flag that does not exist is a usage error
// (exit 2) that names the flag probably meant, on any subcommand.
func TestMistypedFlagIsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--duraton", "1s"}, "unknown flag: --duraton (did you mean --duration?)"},
		{[]string{"bench", "--stack", "--imap-fast-pol=30ms"}, "unknown flag: --imap-fast-pol (did you mean --imap-fast-poll?)"},
	} {
		err := run(context.Background(), tc.args, os.Getenv, &bytes.Buffer{})
		if code := exitCode(err); code != 2 || err.Error() != tc.want {
			t.Errorf("%q: exit %d, err %v; want 2 and %q", tc.args, code, err, tc.want)
		}
	}
}

func TestDevRefusesUnknownBreak(t *testing.T) {
	err := run(context.Background(), []string{"dev", "--checks", "testdata/fast-checks.yaml", "--data-dir", t.TempDir(), "--break", "nope"}, os.Getenv, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--break nope: no such check") {
		t.Errorf("err = %v", err)
	}
}

// TestDevHTTPPortTaken: a --http port already in use stops scout dev before
// it prints anything or starts a service, with the way out in the message.
func TestDevHTTPPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var out bytes.Buffer
	dataDir := filepath.Join(t.TempDir(), "dev")
	err = run(context.Background(), []string{"dev", "--checks", "testdata/fast-checks.yaml", "--data-dir", dataDir,
		"--http", taken.Addr().String(), "--duration", "5s"}, os.Getenv, &out)
	if err == nil {
		t.Fatalf("scout dev ran with its HTTP port taken:\n%s", out.String())
	}
	for _, want := range []string{"--http " + taken.Addr().String() + ": ", "address already in use", "--http 127.0.0.1:0", `--http ""`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if out.Len() != 0 {
		t.Errorf("printed before failing:\n%s", out.String())
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Error("created the data directory before failing")
	}
}

func TestBreakEndNote(t *testing.T) {
	f, err := checks.Load("../../deploy/dev/checks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		breaks []string
		want   string
	}{
		{[]string{"acme-roundtrip"}, "the probes of acme-roundtrip flow again"},
		{[]string{"acme-smtp"}, "acme-smtp answers normally again"},
		{[]string{"acme-imap", "acme-pop3"}, "acme-imap, acme-pop3 answer normally again"},
		{[]string{"acme-roundtrip", "acme-smtp"}, "the probes of acme-roundtrip flow again; acme-smtp answers normally again"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.breaks, "+"), func(t *testing.T) {
			if got := breakEndNote(f, tc.breaks); got != tc.want {
				t.Errorf("breakEndNote(%v) = %q, want %q", tc.breaks, got, tc.want)
			}
		})
	}
}
