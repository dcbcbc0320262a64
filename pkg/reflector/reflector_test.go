package reflector

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/emersion/go-smtp"
)

var (
	key     = probemail.Key{ID: "acme-1", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{5}, 32))}
	now     = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	mailbox = "webscout@acme.example"
)

func keys(t *testing.T) *probemail.Keyring {
	k, err := probemail.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func probe(t *testing.T, testID string, started time.Time) []byte {
	t.Helper()
	p := probemail.Probe{KeyID: key.ID, TestID: testID, CheckID: "acme-rt", Site: "eu-west", Attempt: 1,
		StartedAt: started, ReturnTo: "return@monitor.example"}
	msg, err := probemail.Build(p, mailbox, key, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

type recordSender struct {
	sent []string
	err  error
}

func (r *recordSender) Send(_ context.Context, from string, to []string, msg []byte) error {
	if r.err != nil {
		return r.err
	}
	r.sent = append(r.sent, strings.Join(to, ","))
	return nil
}

func TestDecideRules(t *testing.T) {
	good := probe(t, "aaaaaaaaaaaaaaaaaaaaaaaa", now.Add(-3*time.Second))
	otherKey := probemail.Key{ID: "acme-1", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{6}, 32))}
	forged, _ := probemail.Build(probemail.Probe{KeyID: "acme-1", TestID: "bbbbbbbbbbbbbbbbbbbbbbbb", CheckID: "acme-rt", Site: "eu-west",
		Attempt: 1, StartedAt: now, ReturnTo: "evil@attacker.example"}, mailbox, otherKey, probemail.BuildOptions{})
	reflected, _ := probemail.Reflect(good, probemail.Probe{TestID: "aaaaaaaaaaaaaaaaaaaaaaaa", ReturnTo: "return@monitor.example"}, mailbox, mailbox, now)
	cases := []struct {
		name   string
		msg    []byte
		sender string
		action string
		reason string
	}{
		{"probe", good, "return@monitor.example", ActionReflect, ""},
		{"probe with mbox line", append([]byte("From return@monitor.example  Sun Nov 29 12:00:00 2026\n"), good...), UnknownSender, ActionReflect, ""},
		{"foreign mail", []byte("From: friend@example.org\r\nSubject: lunch?\r\n\r\nhi\r\n"), "friend@example.org", ActionIgnore, ReasonNotProbe},
		{"forged signature", forged, "evil@attacker.example", ActionIgnore, ReasonBadSignature},
		{"reflected message", reflected, "webscout@acme.example", ActionIgnore, ReasonReflected},
		{"auto-submitted", append([]byte("Auto-Submitted: auto-generated\r\n"), good...), "return@monitor.example", ActionIgnore, ReasonAutoSubmit},
		{"bounce: empty sender", good, "", ActionIgnore, ReasonBounce},
		{"bounce: mbox MAILER-DAEMON", append([]byte("From MAILER-DAEMON  Sun Nov 29 12:00:00 2026\n"), good...), UnknownSender, ActionIgnore, ReasonBounce},
		{"stale replay", probe(t, "cccccccccccccccccccccccc", now.Add(-72*time.Hour)), "return@monitor.example", ActionIgnore, ReasonStale},
		{"not a message", []byte("\x00\x01garbage without header end"), "x@y", ActionIgnore, ReasonUnreadable},
	}
	r := New(Config{Keys: keys(t)}, &recordSender{}, nil, func() time.Time { return now })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Decide(tc.msg, tc.sender)
			if d.Action != tc.action || d.Reason != tc.reason {
				t.Fatalf("decision %s (%s: %s), want %s (%s)", d.Action, d.Reason, d.Detail, tc.action, tc.reason)
			}
			if d.Action == ActionReflect {
				ret, err := probemail.ParseReturned(d.Out)
				if err != nil || !ret.Reflected() || ret.ProbeTo != mailbox {
					t.Fatalf("reflection: %v %+v", err, ret)
				}
				if bytes.HasPrefix(d.Out, []byte("From ")) {
					t.Error("mbox line kept in the reflection")
				}
			}
		})
	}
}

func TestHandleAnswersOnce(t *testing.T) {
	dir := t.TempDir()
	seen, err := NewFileSeen(dir, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	s := &recordSender{}
	r := New(Config{Keys: keys(t)}, s, seen, func() time.Time { return now })
	msg := probe(t, "dddddddddddddddddddddddd", now)
	for i := 0; i < 3; i++ {
		if _, err := r.Handle(context.Background(), msg, "return@monitor.example"); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.sent) != 1 || s.sent[0] != "return@monitor.example" {
		t.Fatalf("sent %v, want exactly one reflection to the return address", s.sent)
	}
	// A second reflector process sharing the state directory agrees.
	seen2, _ := NewFileSeen(dir, func() time.Time { return now })
	d, _ := New(Config{Keys: keys(t)}, s, seen2, func() time.Time { return now }).Handle(context.Background(), msg, "return@monitor.example")
	if d.Reason != ReasonAnswered || len(s.sent) != 1 {
		t.Errorf("second process: %s, sent %d", d.Reason, len(s.sent))
	}
}

func TestHandleTemporaryFailureReleases(t *testing.T) {
	seen := NewMemorySeen(func() time.Time { return now })
	s := &recordSender{err: fault.Temporary(errors.New("451 try later"))}
	r := New(Config{Keys: keys(t)}, s, seen, func() time.Time { return now })
	msg := probe(t, "eeeeeeeeeeeeeeeeeeeeeeee", now)
	_, err := r.Handle(context.Background(), msg, "return@monitor.example")
	if !fault.MarkedTemporary(err) {
		t.Fatalf("err = %v, want temporary", err)
	}
	s.err = nil
	if _, err := r.Handle(context.Background(), msg, "return@monitor.example"); err != nil || len(s.sent) != 1 {
		t.Fatalf("retry after a temporary failure: err %v, sent %v", err, s.sent)
	}
}

func TestSMTPSender(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.Options{})
	r := New(Config{Keys: keys(t), EnvelopeFrom: mailbox}, SMTP{Config: submit.Config{Addr: srv.Addr, TLS: submit.TLSNone}}, nil, func() time.Time { return now })
	if _, err := r.Handle(context.Background(), probe(t, "ffffffffffffffffffffffff", now), "return@monitor.example"); err != nil {
		t.Fatal(err)
	}
	got := srv.Wait(1, 5*time.Second)
	if len(got) != 1 || got[0].From != mailbox || got[0].To[0] != "return@monitor.example" {
		t.Fatalf("server got %+v", got)
	}

	refusing := mailtest.NewServer(t, mailtest.Options{Rcpt: func(string) error {
		return &smtp.SMTPError{Code: 421, Message: "busy"}
	}})
	r = New(Config{Keys: keys(t)}, SMTP{Config: submit.Config{Addr: refusing.Addr, TLS: submit.TLSNone}}, nil, func() time.Time { return now })
	if _, err := r.Handle(context.Background(), probe(t, "gggggggggggggggggggggggg", now), "return@monitor.example"); !fault.MarkedTemporary(err) {
		t.Errorf("421: err = %v, want temporary", err)
	}
}

func TestSendmailSender(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := script("ok", `printf '%s\n' "$*" > `+out+`.args; cat > `+out+"\n")
	if err := (Sendmail{Path: ok}).Send(context.Background(), "webscout@acme.example", []string{"return@monitor.example"}, []byte("msg\r\n")); err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(out + ".args")
	if strings.TrimSpace(string(args)) != "-oi -f webscout@acme.example -- return@monitor.example" {
		t.Errorf("args = %q", args)
	}
	if body, _ := os.ReadFile(out); string(body) != "msg\r\n" {
		t.Errorf("stdin = %q", body)
	}
	temp := script("temp", "exit 75\n")
	if err := (Sendmail{Path: temp}).Send(context.Background(), "", []string{"r@x"}, nil); !fault.MarkedTemporary(err) {
		t.Errorf("exit 75: %v, want temporary", err)
	}
	perm := script("perm", "echo 'bad address' >&2; exit 65\n")
	err := (Sendmail{Path: perm}).Send(context.Background(), "", []string{"r@x"}, nil)
	if err == nil || fault.MarkedTemporary(err) || !strings.Contains(err.Error(), "bad address") {
		t.Errorf("exit 65: %v, want permanent with stderr", err)
	}
	if err := (Sendmail{Path: filepath.Join(dir, "missing")}).Send(context.Background(), "", []string{"r@x"}, nil); !fault.MarkedTemporary(err) {
		t.Errorf("missing binary: %v, want temporary", err)
	}
}

func TestFileSeenAnswered(t *testing.T) {
	seen, err := NewFileSeen(t.TempDir(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	id := "hhhhhhhhhhhhhhhhhhhhhhhh"
	for _, step := range []struct {
		do   func() error
		want bool
	}{
		{func() error { return nil }, false},
		{func() error { _, err := seen.Claim(id); return err }, true},
		{func() error { return seen.Release(id) }, false},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		if got, err := seen.Answered(id); err != nil || got != step.want {
			t.Fatalf("Answered = %v, %v; want %v", got, err, step.want)
		}
	}
	if got, err := seen.Answered("../etc/passwd"); got || err != nil {
		t.Errorf("unsafe id: %v, %v", got, err)
	}
}

func TestMboxSender(t *testing.T) {
	cases := []struct {
		msg    string
		sender string
		ok     bool
	}{
		{"From scout@monitor.example  Sun Nov 29 11:59:58 2026\nTo: x@y\n\nhi\n", "scout@monitor.example", true},
		{"From MAILER-DAEMON  Sun Nov 29 11:59:58 2026\r\nTo: x@y\r\n\r\nhi\r\n", "MAILER-DAEMON", true},
		{"From: a@b.example\r\nTo: x@y\r\n\r\nhi\r\n", "", false},
		{"", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.msg[:min(len(tc.msg), 12)], func(t *testing.T) {
			s, ok := MboxSender([]byte(tc.msg))
			if s != tc.sender || ok != tc.ok {
				t.Errorf("MboxSender = %q, %v; want %q, %v", s, ok, tc.sender, tc.ok)
			}
		})
	}
}

// TestFileSeenPrunesAtMostHourly: a pipe reflector is a new process per
// probe; records older than Keep are removed by the first claim, then not
// again until an hour later (the .pruned file's mtime), whichever process
// claims then.
func TestFileSeenPrunesAtMostHourly(t *testing.T) {
	dir := t.TempDir()
	at := now
	clock := func() time.Time { return at }
	old := func(name string) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at.Add(-8*24*time.Hour), at.Add(-8*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	claim := func(testID string) { // a new process each time, as in pipe mode
		t.Helper()
		seen, err := NewFileSeen(dir, clock)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := seen.Claim(testID); !ok || err != nil {
			t.Fatalf("claim %s: %v %v", testID, ok, err)
		}
	}
	old("old1")
	claim("aaaa")
	if exists("old1") || !exists("aaaa") {
		t.Fatal("the first claim did not prune the week-old record (or lost its own)")
	}
	old("old2")
	at = at.Add(59 * time.Minute)
	claim("bbbb")
	if !exists("old2") {
		t.Error("pruned again within the hour")
	}
	at = at.Add(2 * time.Minute)
	claim("cccc")
	if exists("old2") {
		t.Error("not pruned an hour after the last time")
	}
	for _, id := range []string{"aaaa", "bbbb", "cccc"} {
		if !exists(id) {
			t.Errorf("record %s of this week was removed", id)
		}
	}
	if ok, err := (&FileSeen{Dir: dir, now: clock}).Answered(prunedMarker); ok || err != nil {
		t.Errorf("the marker passes for an answered probe: %v %v", ok, err)
	}
}
