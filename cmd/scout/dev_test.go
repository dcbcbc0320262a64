package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDevRoundTrips runs `scout dev` (every service, embedded NATS, the
// demo mail server and its reflector) with the repository's dev check file:
// probes go out, come back and become ok verdicts, and it exits 0.
func TestDevRoundTrips(t *testing.T) {
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
}

// TestDevBreakShowsIncident is `scout dev --break`: the demo server swallows
// one check's probes, so its attempts time out, are retested and confirmed
// at the other site, an incident opens and the SMS text is shown; when the
// break ends the incident resolves with its SMS.
func TestDevBreakShowsIncident(t *testing.T) {
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

func TestDevRefusesUnknownBreak(t *testing.T) {
	err := run(context.Background(), []string{"dev", "--checks", "testdata/fast-checks.yaml", "--data-dir", t.TempDir(), "--break", "nope"}, os.Getenv, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--break nope: no such check") {
		t.Errorf("err = %v", err)
	}
}
