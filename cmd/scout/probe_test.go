package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
)

const (
	probeKeyA = "acme:acme-2026:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	probeKeyB = "acme:acme-2027:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
	probeKeyG = "globex:globex-1:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
)

var probeNow = time.Date(2026, 11, 29, 12, 0, 0, 123_000_000, time.UTC)

// scoutProbe runs `scout probe args` with the environment env and returns
// stdout and the error.
func scoutProbe(t *testing.T, env map[string]string, args ...string) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newProbeCmd(func(k string) string { return env[k] }, func() time.Time { return probeNow }, rand.Reader)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.Bytes(), err
}

// TestProbeVerifies: the probe `scout probe` writes verifies with the key
// it names, for the --to mailbox, carries the flags' values, and is what
// a reflector answers (pkg/reflector, the library behind scout-reflector).
func TestProbeVerifies(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("# acme, rotated 2026-11\n\n"+probeKeyA+"\n"+probeKeyB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--check", "acme-roundtrip", "--to", "webscout@acme.example", "--return", "scout@eu-west.return.test"}
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		wantKey string
		site    string
	}{
		{"key file with comments: its first key", nil, append([]string{"--key-file", keyFile}, common...), "acme-2026", "manual"},
		{"--keys and --key-id", nil, append([]string{"--keys", probeKeyA + ";" + probeKeyB, "--key-id", "acme-2027", "--site", "eu-west"}, common...), "acme-2027", "eu-west"},
		{"$SCOUT_PROBE_KEYS by default", map[string]string{"SCOUT_PROBE_KEYS": probeKeyB}, common, "acme-2027", "manual"},
		{"--customer: its signing key among other customers'", map[string]string{"SCOUT_PROBE_KEYS": probeKeyG + "," + probeKeyA + "," + probeKeyB},
			append([]string{"--customer", "acme"}, common...), "acme-2026", "manual"},
	}
	ring, err := probemail.ParseKeys(probeKeyA + "\n" + probeKeyB + "\n" + probeKeyG)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := scoutProbe(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			ret, err := probemail.ParseReturned(msg)
			if err != nil || ret.HeaderErr != nil {
				t.Fatalf("parse: %v %v\n%s", err, ret.HeaderErr, msg)
			}
			p, key, err := probemail.Verify(ret.HeaderValue, "webscout@acme.example", ring)
			if err != nil {
				t.Fatalf("the probe does not verify: %v\n%s", err, msg)
			}
			want := probemail.Probe{KeyID: tc.wantKey, TestID: p.TestID, CheckID: "acme-roundtrip", Site: tc.site, Attempt: 1,
				StartedAt: probeNow, ReturnTo: "scout@eu-west.return.test"}
			if p != want || key.ID != tc.wantKey || len(p.TestID) != 24 {
				t.Errorf("probe %+v signed by %s\nwant %+v", p, key.ID, want)
			}
			if _, _, err := probemail.Verify(ret.HeaderValue, "other@acme.example", ring); !errors.Is(err, probemail.ErrBadSignature) {
				t.Errorf("verified for another mailbox: %v (the signature must cover To)", err)
			}
			d := reflector.New(reflector.Config{Keys: ring}, nil, nil, func() time.Time { return probeNow.Add(time.Second) }).
				Decide(msg, reflector.UnknownSender)
			if d.Action != reflector.ActionReflect || d.ProbeTo != "webscout@acme.example" {
				t.Errorf("a reflector would %s it (%s %s)", d.Action, d.Reason, d.Detail)
			}
		})
	}
}

func TestProbeTestIDsDiffer(t *testing.T) {
	args := []string{"--keys", probeKeyA, "--check", "acme-roundtrip", "--to", "webscout@acme.example", "--return", "r@monitor.example"}
	a, errA := scoutProbe(t, nil, args...)
	b, errB := scoutProbe(t, nil, args...)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	ra, _ := probemail.ParseReturned(a)
	rb, _ := probemail.ParseReturned(b)
	if ra.TestID == "" || ra.TestID == rb.TestID {
		t.Errorf("test ids %q and %q: want two different ids", ra.TestID, rb.TestID)
	}
}

func TestProbeRefuses(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte(probeKeyA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := []string{"--to", "webscout@acme.example", "--return", "r@monitor.example"}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no flags", nil, nil, "missing --check, --to, --return"},
		{"no key", nil, append([]string{"--check", "acme-rt"}, addr...), "no probe key: give --keys, --key-file or set SCOUT_PROBE_KEYS"},
		{"both key sources", nil, append([]string{"--check", "acme-rt", "--keys", probeKeyA, "--key-file", keyFile}, addr...), "give --keys or --key-file, not both"},
		{"missing key file", nil, append([]string{"--check", "acme-rt", "--key-file", keyFile + ".gone"}, addr...), "--key-file: open"},
		{"bad key list from the environment", map[string]string{"SCOUT_PROBE_KEYS": "acme:k1"}, append([]string{"--check", "acme-rt"}, addr...), "SCOUT_PROBE_KEYS: invalid probe key list: entry 1"},
		{"unknown key id", nil, append([]string{"--check", "acme-rt", "--key-file", keyFile, "--key-id", "acme-1999"}, addr...), `--key-id "acme-1999" is not in --key-file ` + keyFile + " (it has acme-2026)"},
		{"unknown customer", nil, append([]string{"--check", "acme-rt", "--key-file", keyFile, "--customer", "globex"}, addr...), `--customer: no probe signing key for customer "globex" in --key-file`},
		{"key id of another customer", map[string]string{"SCOUT_PROBE_KEYS": probeKeyA + ";" + probeKeyG}, append([]string{"--check", "acme-rt", "--key-id", "globex-1", "--customer", "acme"}, addr...), `--key-id "globex-1" belongs to customer "globex", not --customer "acme"`},
		{"check id with a dot", nil, append([]string{"--check", "acme.rt", "--keys", probeKeyA}, addr...), `--check "acme.rt" is not [a-z0-9_-]{1,63}`},
		{"to with a display name", nil, []string{"--check", "acme-rt", "--keys", probeKeyA, "--to", "Web Scout <webscout@acme.example>", "--return", "r@monitor.example"}, "is not a plain address"},
		{"attempt 0", nil, append([]string{"--check", "acme-rt", "--keys", probeKeyA, "--attempt", "0"}, addr...), "a=0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := scoutProbe(t, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit status %d, want 2 (usage)", exitCode(err))
			}
			if len(out) != 0 {
				t.Errorf("wrote a message after an error:\n%s", out)
			}
		})
	}
}
