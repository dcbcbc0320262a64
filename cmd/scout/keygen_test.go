package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/probemail"
)

var keygenNow = time.Date(2026, 11, 29, 23, 30, 0, 0, time.FixedZone("UTC-5", -5*3600)) // 2026-11-30 in UTC

func TestKeygen(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		wantID string
	}{
		{"default id is customer and UTC date", []string{"acme"}, "acme-20261130"},
		{"explicit id", []string{"globex", "--id", "globex.2027_a"}, "globex.2027_a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := newKeygenCmd(func() time.Time { return keygenNow }, rand.Reader)
			cmd.SetArgs(tc.args)
			cmd.SetOut(&out)
			cmd.SetErr(&errb)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			line := strings.TrimSuffix(out.String(), "\n")
			if strings.Contains(line, "\n") {
				t.Fatalf("stdout has more than the key line: %q", out.String())
			}
			ring, err := probemail.ParseKeys(line)
			if err != nil {
				t.Fatalf("ParseKeys(%q): %v", line, err)
			}
			customer := tc.args[0]
			key, err := ring.SigningKey(customer)
			if err != nil {
				t.Fatal(err)
			}
			if key.ID != tc.wantID || len(key.Secret) != 32 {
				t.Errorf("key id %q, %d-byte secret; want %q and 32 bytes", key.ID, len(key.Secret), tc.wantID)
			}
			hint := errb.String()
			if !strings.HasPrefix(hint, "# ") || strings.Count(hint, "\n") != 1 ||
				!strings.Contains(hint, "SCOUT_PROBE_KEYS") || !strings.Contains(hint, "key file") {
				t.Errorf("hint on stderr %q: want one # line naming SCOUT_PROBE_KEYS and the key file", hint)
			}
		})
	}
}

func TestKeygenSecretsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		var out bytes.Buffer
		cmd := newKeygenCmd(func() time.Time { return keygenNow }, rand.Reader)
		cmd.SetArgs([]string{"acme"})
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if seen[out.String()] {
			t.Fatalf("the same key twice: %q", out.String())
		}
		seen[out.String()] = true
	}
}

func TestKeygenRefuses(t *testing.T) {
	cases := []struct {
		name string
		args []string
		rnd  func([]byte) (int, error)
		want string
	}{
		{"customer with a dot", []string{"Acme.example"}, nil, `customer "Acme.example" is not [a-z0-9_-]{1,63}`},
		{"key id with a colon", []string{"acme", "--id", "acme:1"}, nil, `--id: invalid probe key list: key id "acme:1"`},
		{"no argument", nil, nil, "accepts 1 arg(s), received 0"},
		{"no randomness", []string{"acme"}, func([]byte) (int, error) { return 0, errors.New("entropy gone") }, "random secret: entropy gone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rnd = rand.Reader
			if tc.rnd != nil {
				rnd = readerFunc(tc.rnd)
			}
			var out bytes.Buffer
			cmd := newKeygenCmd(func() time.Time { return keygenNow }, rnd)
			cmd.SetArgs(tc.args)
			cmd.SetOut(&out)
			cmd.SetErr(&bytes.Buffer{})
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("printed a key after an error: %q", out.String())
			}
		})
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
