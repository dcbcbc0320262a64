package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"
)

var (
	oldKey  = probemail.Key{ID: "acme-2025", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{1}, 32))}
	newKey  = probemail.Key{ID: "acme-2026", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{2}, 32))}
	goneKey = probemail.Key{ID: "acme-2024", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{3}, 32))}
	now     = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	mailbox = "webscout@acme.example"
	ret     = "return@monitor.example"
)

func keyLine(k probemail.Key) string {
	return k.Customer + ":" + k.ID + ":" + base64.StdEncoding.EncodeToString(k.Secret)
}

func probeMsg(t *testing.T, id string, k probemail.Key, started time.Time) []byte {
	t.Helper()
	msg, err := probemail.Build(probemail.Probe{KeyID: k.ID, TestID: id, CheckID: "acme-rt", Site: "eu-west",
		Attempt: 1, StartedAt: started, ReturnTo: ret}, mailbox, k, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// fixture is one reflector installation: a home directory with a key file
// and a sendmail stand-in that records what it was given.
type fixture struct {
	t        *testing.T
	home     string
	keyFile  string
	sendmail string
	out      string // the sendmail stand-in writes stdin here, args to out+".args"
}

func newFixture(t *testing.T, sendmailExit int) *fixture {
	t.Helper()
	home := t.TempDir()
	f := &fixture{t: t, home: home, keyFile: filepath.Join(home, "keys"), out: filepath.Join(home, "sent")}
	writeFile(t, f.keyFile, "# acme, rotated 2026-01\n"+keyLine(newKey)+"\n"+keyLine(oldKey)+"\n", 0o600)
	f.sendmail = filepath.Join(home, "sendmail")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> '%s.args'\ncat >> '%s'\n", f.out, f.out)
	if sendmailExit != 0 {
		script += fmt.Sprintf("echo 'sendmail says no' >&2\nexit %d\n", sendmailExit)
	}
	writeFile(t, f.sendmail, script, 0o755)
	return f
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// result of one in-process run.
type result struct {
	code           int
	stdout, stderr string
}

func (f *fixture) run(stdin []byte, vars map[string]string, args ...string) result {
	f.t.Helper()
	var out, errb bytes.Buffer
	lookup := func(k string) (string, bool) {
		if k == "HOME" {
			return f.home, true
		}
		v, ok := vars[k]
		return v, ok
	}
	code := run(context.Background(), env{args: args, stdin: bytes.NewReader(stdin), stdout: &out, stderr: &errb,
		lookupEnv: lookup, now: func() time.Time { return now }})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (f *fixture) pipe(stdin []byte, vars map[string]string, extra ...string) result {
	return f.run(stdin, vars, append([]string{"--key-file", f.keyFile, "--sendmail", f.sendmail}, extra...)...)
}

func (f *fixture) sent() (args string, msg []byte) {
	a, _ := os.ReadFile(f.out + ".args")
	m, _ := os.ReadFile(f.out)
	return string(a), m
}

func sender(s string) map[string]string { return map[string]string{"SENDER": s} }

func TestPipeMode(t *testing.T) {
	id := "aaaaaaaaaaaaaaaaaaaaaaaa"
	good := probeMsg(t, id, newKey, now.Add(-2*time.Second))
	reflection, _ := probemail.Reflect(good, probemail.Probe{TestID: id, ReturnTo: ret}, mailbox, mailbox, now)
	cases := []struct {
		name    string
		msg     []byte
		vars    map[string]string
		reflect bool
	}{
		{"probe, $SENDER set (Postfix)", good, sender(ret), true},
		{"probe with the mbox From line, no $SENDER", append([]byte("From "+ret+"  Sun Nov 29 11:59:58 2026\n"), good...), nil, true},
		{"probe without mbox line or $SENDER (Sendmail)", good, nil, true},
		{"probe signed with the previous key (rotation)", probeMsg(t, id, oldKey, now), sender(ret), true},
		{"probe signed with a retired key", probeMsg(t, id, goneKey, now), sender(ret), false},
		{"bounce: empty $SENDER", good, sender(""), false},
		{"bounce: mbox MAILER-DAEMON", append([]byte("From MAILER-DAEMON  Sun Nov 29 11:59:58 2026\n"), good...), nil, false},
		{"bounce: From mailer-daemon", append([]byte("From: MAILER-DAEMON@mx.acme.example\r\n"), bytes.Replace(good, []byte("From:"), []byte("X-Old-From:"), 1)...), sender(ret), false},
		{"foreign mail", []byte("From: friend@example.org\r\nTo: webscout@acme.example\r\nSubject: lunch\r\n\r\nhi\r\n"), sender("friend@example.org"), false},
		{"a reflection (loop)", reflection, sender(mailbox), false},
		{"auto-replied", append([]byte("Auto-Submitted: auto-replied\r\n"), good...), sender(ret), false},
		{"replay of an old probe", probeMsg(t, id, newKey, now.Add(-72*time.Hour)), sender(ret), false},
		{"forged: another secret under a known key id", probeMsg(t, id, probemail.Key{ID: newKey.ID, Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{9}, 32))}, now), sender(ret), false},
		{"empty input", nil, sender(ret), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			r := f.pipe(tc.msg, tc.vars)
			if r.code != exitOK {
				t.Fatalf("exit %d, want 0; stderr %s", r.code, r.stderr)
			}
			if r.stderr != "" || r.stdout != "" {
				t.Errorf("output without --verbose: stdout %q stderr %q (Exim's return_output would bounce)", r.stdout, r.stderr)
			}
			args, out := f.sent()
			if !tc.reflect {
				if args != "" {
					t.Fatalf("sent a reflection: %s", args)
				}
				if _, err := os.Stat(filepath.Join(f.home, ".scout-reflector")); err == nil {
					t.Error("state directory created for a message that was not answered")
				}
				return
			}
			if strings.TrimSpace(args) != "-oi -- "+ret {
				t.Errorf("sendmail args %q", args)
			}
			checkReflection(t, out, id)
		})
	}
}

func checkReflection(t *testing.T, out []byte, id string) {
	t.Helper()
	if bytes.HasPrefix(out, []byte("From ")) {
		t.Error("the mbox From line went out")
	}
	r, err := probemail.ParseReturned(out)
	if err != nil || !r.Reflected() || r.TestID != id || r.ProbeTo != mailbox || r.AutoSubmitted != "auto-replied" {
		t.Fatalf("reflection: %v %+v", err, r)
	}
	mr, err := mail.CreateReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	h := mr.Header
	if irt, _ := h.MsgIDList("In-Reply-To"); len(irt) != 1 || irt[0] != probemail.ProbeMessageID(id, ret) {
		t.Errorf("In-Reply-To %v", irt)
	}
	if to, _ := h.AddressList("To"); len(to) != 1 || to[0].Address != ret {
		t.Errorf("To %v", to)
	}
	if got := h.Get(probemail.HeaderReflectedAt); got != "2026-11-29T12:00:00.000Z" {
		t.Errorf("%s: %q", probemail.HeaderReflectedAt, got)
	}
	if s, _ := h.Subject(); !strings.HasSuffix(s, " [reflected 2026-11-29T12:00:00.000Z]") {
		t.Errorf("Subject %q lacks the stamp", s)
	}
}

func TestPipeAnswersAProbeOnce(t *testing.T) {
	f := newFixture(t, 0)
	msg := probeMsg(t, "bbbbbbbbbbbbbbbbbbbbbbbb", newKey, now)
	for i := 0; i < 3; i++ {
		if r := f.pipe(msg, sender(ret)); r.code != 0 {
			t.Fatalf("run %d: exit %d %s", i, r.code, r.stderr)
		}
	}
	if args, _ := f.sent(); strings.Count(args, "\n") != 1 {
		t.Fatalf("sendmail ran %d times, want 1", strings.Count(args, "\n"))
	}
	if fi, err := os.Stat(filepath.Join(f.home, ".scout-reflector")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v %v", fi, err)
	}
}

// c08: mail systems re-encode and fold the Subject (and fold the probe
// header); the probe is still answered and the reflection still names it.
func TestPipeEncodedFoldedSubject(t *testing.T) {
	id := "cccccccccccccccccccccccc"
	good := probeMsg(t, id, newKey, now)
	probeField := regexp.MustCompile(`(?m)^` + probemail.HeaderProbe + `:.*\r\n(?:[ \t].*\r\n)*`).Find(good)
	refolded := strings.ReplaceAll(strings.ReplaceAll(string(probeField), "\r\n ", " "), "; ", ";\r\n\t")
	msg := replaceField(good, probemail.HeaderProbe, refolded)
	msg = replaceField(msg, "Subject", "Subject: [EXTERNAL] =?UTF-8?Q?Email_Scout_probe_"+id+"_r=C3=BCckweg_a_b_c_=C3?=\r\n =?UTF-8?Q?=A9?=\r\n")
	b64 := bytes.Replace(good, []byte("Subject: "), []byte("Subject: =?UTF-8?B?"+base64.StdEncoding.EncodeToString([]byte("AW: Email Scout probe "+id))+"?=\r\nX-Old-Subject: "), 1)
	for name, m := range map[string][]byte{"quoted-printable split character": msg, "base64, AW: prefix": b64} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 0)
			if r := f.pipe(m, sender(ret)); r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			_, out := f.sent()
			checkReflection(t, out, id)
		})
	}
	f := newFixture(t, 0)
	f.pipe(msg, sender(ret))
	_, out := f.sent()
	mr, _ := mail.CreateReader(bytes.NewReader(out))
	if s, _ := mr.Header.Subject(); !strings.HasPrefix(s, "[EXTERNAL] Email Scout probe "+id+" rückweg a b c é [reflected") {
		t.Errorf("decoded Subject of the reflection: %q", s)
	}
}

// replaceField replaces the header field name (with its continuation lines)
// by raw.
func replaceField(msg []byte, name, raw string) []byte {
	re := regexp.MustCompile(`(?m)^` + name + `:.*\r\n(?:[ \t].*\r\n)*`)
	return re.ReplaceAllLiteral(msg, []byte(raw))
}

func TestFileModeTakesTheLastArgument(t *testing.T) {
	f := newFixture(t, 0)
	path := filepath.Join(t.TempDir(), "D1234.TMP")
	writeFile(t, path, string(probeMsg(t, "dddddddddddddddddddddddd", newKey, now)), 0o600)
	r := f.run(nil, nil, "file", "--key-file", f.keyFile, "--sendmail", f.sendmail, "--verbose", path)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	_, out := f.sent()
	checkReflection(t, out, "dddddddddddddddddddddddd")
	if !strings.Contains(r.stderr, "msg=reflected") {
		t.Errorf("--verbose: no log line on stderr: %q", r.stderr)
	}
	// A file that cannot be read: the MTA should keep the message.
	if r := f.run(nil, nil, "file", "--key-file", f.keyFile, filepath.Join(t.TempDir(), "missing")); r.code != exitTempFail {
		t.Errorf("missing file: exit %d, want 75", r.code)
	}
	if r := f.run(nil, nil, "file", "--key-file", f.keyFile); r.code != exitConfig {
		t.Errorf("no file argument: exit %d, want 78", r.code)
	}
}

func TestExitCodes(t *testing.T) {
	probe := probeMsg(t, "eeeeeeeeeeeeeeeeeeeeeeee", newKey, now)
	t.Run("sendmail temporary failure: 75, message on stderr for the MTA's log", func(t *testing.T) {
		f := newFixture(t, 75)
		r := f.pipe(probe, sender(ret))
		if r.code != exitTempFail || !strings.Contains(r.stderr, "sendmail says no") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		// The claim was released: the MTA's retry answers.
		writeFile(t, f.sendmail, fmt.Sprintf("#!/bin/sh\ncat > '%s'\n", f.out), 0o755)
		if r := f.pipe(probe, sender(ret)); r.code != 0 {
			t.Fatalf("retry: exit %d %s", r.code, r.stderr)
		}
		_, out := f.sent()
		checkReflection(t, out, "eeeeeeeeeeeeeeeeeeeeeeee")
	})
	t.Run("sendmail permanent failure: 0 and logged, never a bounce", func(t *testing.T) {
		f := newFixture(t, 65)
		r := f.pipe(probe, sender(ret))
		if r.code != exitOK || !strings.Contains(r.stderr, "permanent failure") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("sendmail missing: 75", func(t *testing.T) {
		f := newFixture(t, 0)
		if r := f.run(probe, sender(ret), "--key-file", f.keyFile, "--sendmail", filepath.Join(f.home, "nope")); r.code != exitTempFail {
			t.Fatalf("exit %d", r.code)
		}
	})
	t.Run("state directory is a file: 78", func(t *testing.T) {
		f := newFixture(t, 0)
		writeFile(t, filepath.Join(f.home, "state"), "", 0o600)
		r := f.pipe(probe, sender(ret), "--state-dir", filepath.Join(f.home, "state"))
		if r.code != exitConfig || !strings.Contains(r.stderr, "state_dir") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("unknown flag in the .forward line: 78", func(t *testing.T) {
		f := newFixture(t, 0)
		if r := f.pipe(probe, sender(ret), "--kee-file", "x"); r.code != exitConfig || !strings.Contains(r.stderr, "unknown flag: --kee-file (did you mean --key-file?)") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("SMTP output: 4xx is 75, 5xx is 0", func(t *testing.T) {
		for _, tc := range []struct {
			code int
			want int
		}{{451, exitTempFail}, {550, exitOK}} {
			srv := mailtest.NewServer(t, mailtest.Options{Rcpt: func(string) error { return &smtp.SMTPError{Code: tc.code, Message: "no"} }})
			f := newFixture(t, 0)
			r := f.pipe(probe, sender(ret), "--output", "smtp", "--smtp", srv.Addr, "--smtp-tls", "none", "--mailbox", mailbox)
			if r.code != tc.want {
				t.Errorf("SMTP %d: exit %d, want %d; %s", tc.code, r.code, tc.want, r.stderr)
			}
		}
	})
}

func TestSMTPOutput(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.Options{Auth: map[string]string{"webscout@acme.example": "pw"}})
	f := newFixture(t, 0)
	pw := filepath.Join(f.home, "smtp-password")
	writeFile(t, pw, "pw\n", 0o600)
	// AUTH without TLS: allowed by pkg/submit on loopback only.
	// --smtp alone selects SMTP output.
	r := f.pipe(probeMsg(t, "ffffffffffffffffffffffff", newKey, now), sender(ret), "--smtp", srv.Addr,
		"--smtp-tls", "none", "--smtp-user", "webscout@acme.example", "--smtp-password-file", pw)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	got := srv.Wait(1, 10*time.Second)
	if len(got) != 1 || got[0].From != "webscout@acme.example" || got[0].To[0] != ret {
		t.Fatalf("server got %+v", got)
	}
	checkReflection(t, got[0].Data, "ffffffffffffffffffffffff")
}

func TestCheck(t *testing.T) {
	f := newFixture(t, 0)
	probe := probeMsg(t, "gggggggggggggggggggggggg", newKey, now.Add(-3*time.Second))
	r := f.run(probe, sender(ret), "check", "--key-file", f.keyFile)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"verdict:", "reflect", "test gggggggggggggggggggggggg, check acme-rt, site eu-west, attempt 1, key acme-2026",
		"(3s ago)", "return to:", ret, "/usr/sbin/sendmail -oi -- " + ret, "reflection header:", "  Auto-Submitted: auto-replied",
		"  X-Scout-Reflected-At: 2026-11-29T12:00:00.000Z"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	if args, _ := f.sent(); args != "" {
		t.Error("check sent something")
	}
	if _, err := os.Stat(filepath.Join(f.home, ".scout-reflector")); err == nil {
		t.Error("check recorded the probe")
	}

	path := filepath.Join(f.home, "foreign.eml")
	writeFile(t, path, "From: a@b.example\r\nSubject: hi\r\n\r\nhi\r\n", 0o600)
	r = f.run(nil, nil, "check", "--key-file", f.keyFile, path)
	if r.code != exitIgnored || !strings.Contains(r.stdout, reflector.ReasonNotProbe) {
		t.Errorf("foreign: exit %d\n%s", r.code, r.stdout)
	}

	r = f.run(probeMsg(t, "gggggggggggggggggggggggg", goneKey, now), nil, "check", "--key-file", f.keyFile)
	if r.code != exitIgnored || !strings.Contains(r.stdout, reflector.ReasonUnknownKey) || !strings.Contains(r.stdout, "probe (unverified):") || !strings.Contains(r.stdout, "key acme-2024") {
		t.Errorf("unknown key: exit %d\n%s", r.code, r.stdout)
	}

	// Once answered, check says so.
	f.pipe(probe, sender(ret))
	r = f.run(probe, nil, "check", "--key-file", f.keyFile, "--sender", ret)
	if r.code != exitIgnored || !strings.Contains(r.stdout, reflector.ReasonAnswered) {
		t.Errorf("answered: exit %d\n%s", r.code, r.stdout)
	}
}

// TestCheckEnvelopeSender: check says where the envelope sender came from,
// and reads the mbox From line when $SENDER is not set.
func TestCheckEnvelopeSender(t *testing.T) {
	probe := probeMsg(t, "hhhhhhhhhhhhhhhhhhhhhhhh", newKey, now)
	mbox := func(from string) []byte { return append([]byte("From "+from+"  Sun Nov 29 11:59:58 2026\n"), probe...) }
	cases := []struct {
		name  string
		msg   []byte
		vars  map[string]string
		extra []string
		want  string
		code  int
	}{
		{"$SENDER", probe, sender(ret), nil, "envelope sender: " + ret + " (from $SENDER)\n", 0},
		{"--sender wins over $SENDER", probe, sender("x@y.example"), []string{"--sender", ret}, "envelope sender: " + ret + " (from --sender)\n", 0},
		{"empty $SENDER: a bounce", probe, sender(""), nil, "envelope sender: <> (a bounce; from $SENDER)\n", exitIgnored},
		{"mbox From line, no $SENDER", mbox(ret), nil, nil, "envelope sender: " + ret + " (read from the mbox From line; $SENDER not set)\n", 0},
		{"mbox From MAILER-DAEMON", mbox("MAILER-DAEMON"), nil, nil, "envelope sender: MAILER-DAEMON (read from the mbox From line; $SENDER not set)\n", exitIgnored},
		{"neither", probe, nil, nil, "envelope sender: unknown ($SENDER not set and no mbox From line: bounces are recognised by the header From only)\n", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			r := f.run(tc.msg, tc.vars, append([]string{"check", "--key-file", f.keyFile}, tc.extra...)...)
			if r.code != tc.code || !strings.Contains(squash(r.stdout), squash(tc.want)) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s", r.code, tc.code, tc.want, r.stdout)
			}
		})
	}
}

// TestCheckSignatureDiagnosis: a probe that does not verify for the
// configured mailbox is told apart from a probe that does not verify at
// all (changed on the way, or another secret under the same key id).
func TestCheckSignatureDiagnosis(t *testing.T) {
	forged := probeMsg(t, "iiiiiiiiiiiiiiiiiiiiiiii", probemail.Key{ID: newKey.ID, Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{9}, 32))}, now)
	good := probeMsg(t, "iiiiiiiiiiiiiiiiiiiiiiii", newKey, now)
	retargeted := bytes.Replace(good, []byte("To: <"+mailbox+">"), []byte("To: <other@acme.example>"), 1)
	if bytes.Equal(retargeted, good) {
		t.Fatal("the probe's To line was not found")
	}
	cases := []struct {
		name  string
		msg   []byte
		extra []string
		want  []string
		not   string
	}{
		{"addressed to another mailbox", good, []string{"--mailbox", "other@acme.example"}, []string{
			"reason: " + reflector.ReasonBadSignature,
			"why: this probe is addressed to " + mailbox + ", another mailbox than other@acme.example (the signature covers the To address): it verifies for " + mailbox,
			"probe (unverified): test iiiiiiiiiiiiiiiiiiiiiiii"}, "changed on the way"},
		{"another secret under a known key id", forged, nil, []string{
			"why: the signature does not verify for the probe's own To (" + mailbox + "): the probe was changed on the way",
			"signed with another secret under the same key id"}, "addressed to"},
		{"another secret, with --mailbox", forged, []string{"--mailbox", mailbox}, []string{
			"the signature does not verify for the probe's own To (" + mailbox + ") either: the probe was changed"}, "addressed to"},
		{"To rewritten on the way", retargeted, nil, []string{
			"the signature does not verify for the probe's own To (other@acme.example): the probe was changed on the way (a rewritten To"}, "addressed to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			r := f.run(tc.msg, sender(ret), append([]string{"check", "--key-file", f.keyFile}, tc.extra...)...)
			if r.code != exitIgnored {
				t.Errorf("exit %d, want %d", r.code, exitIgnored)
			}
			for _, w := range tc.want {
				if !strings.Contains(squash(r.stdout), squash(w)) {
					t.Errorf("output lacks %q", w)
				}
			}
			if strings.Contains(r.stdout, tc.not) {
				t.Errorf("output says %q", tc.not)
			}
			if t.Failed() {
				t.Logf("output:\n%s", r.stdout)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name  string
		file  string // config file content ("" for none)
		mode  os.FileMode
		args  []string
		vars  map[string]string
		wants []string
	}{
		{name: "no keys", wants: []string{"no probe keys", "--key-file"}},
		{name: "key file readable by others", args: []string{"--key-file", "{home}/open-keys"},
			wants: []string{"--key-file: key file {home}/open-keys is accessible by group or others (mode 0644)", "chmod 600"}},
		{name: "bad key list", args: []string{"--keys", "acme:k1:c2hvcnQ"}, wants: []string{"--keys:", "at least 16"}},
		{name: "bad key list in the environment", vars: map[string]string{envKeys: "garbage"}, wants: []string{"$" + envKeys, "not customer:keyid:base64-secret"}},
		{name: "unknown key, with its line", file: "key_file: {home}/keys\nsmtp:\n  adr: x:25\n", wants: []string{"{config}:3: unknown key \"smtp.adr\""}},
		{name: "bad duration", file: "key_file: {home}/keys\nmax_age: soon\n", wants: []string{"{config}:2: \"soon\" is not a duration"}},
		{name: "bad value names the file, line and key", file: "key_file: {home}/keys\noutput: smtp\nsmtp:\n  addr: mx:25\n  tls: startls\n",
			wants: []string{"{config}:5: smtp.tls: \"startls\" is not none, opportunistic, starttls or implicit"}},
		{name: "a flag wins over the file and is named", file: "key_file: {home}/keys\n", args: []string{"--output", "smtp", "--smtp", "mx:25", "--smtp-tls", "tls"},
			wants: []string{"--smtp-tls: \"tls\" is not"}},
		{name: "every problem at once", file: "key_file: {home}/keys\noutput: fax\nmailboxes: [not an address]\n",
			wants: []string{"{config}:2: output: \"fax\"", "{config}:3: mailboxes: \"not an address\""}},
		{name: "keys given twice", file: "keys: acme:k:AAAAAAAAAAAAAAAAAAAAAA\n", mode: 0o600, args: []string{"--key-file", "{home}/keys"}, wants: []string{"give the probe keys once"}},
		{name: "config file with secrets readable by others", file: "keys: acme:k:AAAAAAAAAAAAAAAAAAAAAA\n", mode: 0o644,
			wants: []string{"configuration file with secrets {config} is accessible by group or others"}},
		{name: "relative paths in pipe mode", args: []string{"--key-file", "keys", "--state-dir", "state"},
			wants: []string{"--key-file: \"keys\" is relative", "--state-dir: \"state\" is relative"}},
		{name: "CA file without certificates", args: []string{"--key-file", "{home}/keys", "--tls-ca-file", "{home}/keys"}, wants: []string{"--tls-ca-file: {home}/keys holds no PEM certificate"}},
		{name: "smtp output without server", args: []string{"--key-file", "{home}/keys", "--output", "smtp"}, wants: []string{"smtp.addr: SMTP output needs"}},
		{name: "smtp auth without password", args: []string{"--key-file", "{home}/keys", "--output", "smtp", "--smtp", "mx:587", "--smtp-user", "u", "--mailbox", mailbox},
			wants: []string{"--smtp-user: AUTH needs a password"}},
		{name: "imap mode needs a server, a user and a password", args: []string{"imap", "--key-file", "{home}/keys", "--smtp", "mx:587", "--mailbox", mailbox},
			wants: []string{"imap.addr: imap mode needs", "imap.username", "imap.password_file"}},
		{name: "imap password in clear off loopback", args: []string{"imap", "--key-file", "{home}/keys", "--imap", "imap.acme.example:143", "--imap-tls", "none",
			"--imap-user", "u", "--smtp", "mx:587", "--mailbox", mailbox}, vars: map[string]string{envIMAPPassword: "pw"},
			wants: []string{"--imap-tls: none would send the password in clear"}},
		{name: "idle refresh beyond RFC 2177", file: "key_file: {home}/keys\nimap:\n  addr: 127.0.0.1:143\n  username: u\n  idle_refresh: 30m\n", args: []string{"imap", "--smtp", "mx:25", "--mailbox", mailbox},
			vars: map[string]string{envIMAPPassword: "pw"}, wants: []string{"{config}:5: imap.idle_refresh: 30m0s is not between 1s and 29m"}},
		{name: "fast poll too fast", file: "key_file: {home}/keys\nimap:\n  addr: 127.0.0.1:143\n  username: u\n  fast_poll: 1ms\n", args: []string{"imap", "--smtp", "mx:25", "--mailbox", mailbox},
			vars: map[string]string{envIMAPPassword: "pw"}, wants: []string{"{config}:5: imap.fast_poll: 1ms is not 0 (off) or between 10ms and 10s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			writeFile(t, filepath.Join(f.home, "open-keys"), keyLine(newKey)+"\n", 0o644)
			cfgPath := filepath.Join(f.home, "reflector.yaml")
			expand := func(s string) string {
				return strings.NewReplacer("{home}", f.home, "{config}", cfgPath).Replace(s)
			}
			var args []string
			if tc.file != "" {
				mode := tc.mode
				if mode == 0 {
					mode = 0o644
				}
				writeFile(t, cfgPath, expand(tc.file), mode)
				args = append(args, "--config", cfgPath)
			}
			for _, a := range tc.args {
				args = append(args, expand(a))
			}
			// Subcommand first, as a user types it.
			if len(tc.args) > 0 && tc.args[0] == "imap" {
				args = append([]string{"imap"}, removeFirst(args, "imap")...)
			}
			r := f.run(probeMsg(t, "hhhhhhhhhhhhhhhhhhhhhhhh", newKey, now), tc.vars, args...)
			if r.code != exitConfig {
				t.Fatalf("exit %d, want 78; stderr %s", r.code, r.stderr)
			}
			for _, w := range tc.wants {
				if !strings.Contains(r.stderr, expand(w)) {
					t.Errorf("stderr lacks %q:\n%s", expand(w), r.stderr)
				}
			}
			if args, _ := f.sent(); args != "" {
				t.Error("sent with a broken configuration")
			}
		})
	}
}

func removeFirst(list []string, s string) []string {
	for i, v := range list {
		if v == s {
			return append(append([]string(nil), list[:i]...), list[i+1:]...)
		}
	}
	return list
}

func TestConfigFileSettings(t *testing.T) {
	f := newFixture(t, 0)
	cfgPath := filepath.Join(f.home, "reflector.yaml")
	writeFile(t, cfgPath, fmt.Sprintf("# scout-reflector\nkey_file: %s\nsendmail: %s\nmailboxes: [WebScout@acme.example]\nenvelope_from: probes@acme.example\nmax_age: 1h\n", f.keyFile, f.sendmail), 0o644)
	if r := f.run(probeMsg(t, "iiiiiiiiiiiiiiiiiiiiiiii", newKey, now.Add(-2*time.Hour)), sender(ret), "--config", cfgPath); r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	if args, _ := f.sent(); args != "" {
		t.Fatal("max_age from the file not applied: a 2h old probe was answered")
	}
	// $SCOUT_REFLECTOR_CONFIG names the file; a flag overrides a key of it.
	r := f.run(probeMsg(t, "iiiiiiiiiiiiiiiiiiiiiiii", newKey, now.Add(-2*time.Hour)), map[string]string{envConfig: cfgPath, "SENDER": ret}, "--max-age", "3h")
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	args, out := f.sent()
	if strings.TrimSpace(args) != "-oi -f probes@acme.example -- "+ret {
		t.Errorf("sendmail args %q", args)
	}
	checkReflection(t, out, "iiiiiiiiiiiiiiiiiiiiiiii")
}

func TestIMAPModeRefusedLoginIsExit78(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, nil)
	f := newFixture(t, 0)
	pw := filepath.Join(f.home, "imap-password")
	writeFile(t, pw, "wrong\n", 0o600)
	r := f.run(nil, nil, "imap", "--key-file", f.keyFile, "--imap", srv.Addr, "--imap-tls", "none",
		"--imap-user", "webscout", "--imap-password-file", pw, "--smtp", mailtest.ClosedAddr(t), "--mailbox", mailbox)
	if r.code != exitConfig || !strings.Contains(r.stderr, "login as webscout") {
		t.Fatalf("exit %d, want 78; stderr %s", r.code, r.stderr)
	}
}

// With --log-file nothing reaches stdout or stderr, even on failure: Exim's
// return_output would bounce on any output.
func TestLogFileKeepsStdoutAndStderrEmpty(t *testing.T) {
	f := newFixture(t, 75)
	logFile := filepath.Join(f.home, "reflector.log")
	probe := probeMsg(t, "jjjjjjjjjjjjjjjjjjjjjjjj", newKey, now)
	r := f.pipe(probe, sender(ret), "--log-file", logFile)
	if r.code != exitTempFail || r.stdout != "" || r.stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 75 and no output", r.code, r.stdout, r.stderr)
	}
	f = newFixture(t, 0)
	logFile = filepath.Join(f.home, "reflector.log")
	f.pipe(probe, sender(ret), "--log-file", logFile)
	f.pipe([]byte("From: a@b.example\r\n\r\nhi\r\n"), sender("a@b.example"), "--log-file", logFile)
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if !strings.Contains(log, "msg=reflected") || !strings.Contains(log, "test_id=jjjjjjjjjjjjjjjjjjjjjjjj") || !strings.Contains(log, "msg=ignored") {
		t.Errorf("log file:\n%s", log)
	}
	if fi, _ := os.Stat(logFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v", fi.Mode().Perm())
	}
}

// squash collapses runs of spaces (tabwriter's column padding).
func squash(s string) string {
	return regexp.MustCompile(` +`).ReplaceAllString(s, " ")
}

// TestVersion: --version prints the build (pkg/buildinfo) and exits 0
// without reading a key file or stdin.
func TestVersion(t *testing.T) {
	f := newFixture(t, 0)
	r := f.run(nil, nil, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "scout-reflector ") || !strings.Contains(r.stdout, "(revision ") ||
		!strings.Contains(r.stdout, runtime.Version()+")") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
