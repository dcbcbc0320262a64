package events

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseSubject(t *testing.T) {
	good := []struct {
		subject string
		want    Subject
	}{
		{"test.scheduled.eu-west.acme-mx", Subject{Name: SubjectTestScheduled, Site: "eu-west", Check: "acme-mx"}},
		{"mail.returned.us_1.c", Subject{Name: SubjectMailReturned, Site: "us_1", Check: "c"}},
		{"incident.open.acme-mx", Subject{Name: SubjectIncidentOpen, Check: "acme-mx"}},
		{"monitor.health.eu-west", Subject{Name: SubjectMonitorHealth, Site: "eu-west"}},
	}
	for _, tc := range good {
		got, err := ParseSubject(tc.subject)
		if err != nil || got != tc.want {
			t.Errorf("ParseSubject(%q) = %+v, %v; want %+v", tc.subject, got, err, tc.want)
		}
		if got.String() != tc.subject {
			t.Errorf("String() = %q, want %q", got.String(), tc.subject)
		}
	}
	// The stored form: the check's partition is checked and dropped.
	for stored, want := range map[string]string{
		"test.scheduled.eu-west.acme-mx.0": "test.scheduled.eu-west.acme-mx",
		"check.result.eu.123.15":           "check.result.eu.123",
	} {
		if got, err := ParseSubject(stored); err != nil || got.String() != want {
			t.Errorf("ParseSubject(%q) = %v, %v; want %s", stored, got, err, want)
		}
	}
	for _, bad := range []string{"", "test.scheduled", "test.scheduled.eu", "test.scheduled.eu.a.b",
		"test.scheduled.eu.a.16", "test.scheduled.eu.a.07", "test.scheduled.eu.a.-1", "test.scheduled.eu.a.1.2",
		"incident.open.a.b", "incident.open.a.1", "monitor.health.eu.1", "foo.bar.a.b", "test.scheduled.EU.acme", "test.scheduled.*.acme", "test.scheduled.eu.>"} {
		if _, err := ParseSubject(bad); !errors.Is(err, ErrSubject) {
			t.Errorf("ParseSubject(%q) err = %v, want ErrSubject", bad, err)
		}
	}
}

func TestValidToken(t *testing.T) {
	for _, ok := range []string{"a", "eu-west-1", "a_b", strings.Repeat("a", 63)} {
		if !ValidToken(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "A", "a.b", "a b", "a*", ">", strings.Repeat("a", 64), "é"} {
		if ValidToken(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMsgIDs(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := TestScheduled{V: 1, TestID: "x1", CheckID: "c", Site: "s", Kind: KindRoundTrip, Attempt: 1, Reason: ReasonInterval, Slot: 42, ScheduledAt: at}
	b := a
	b.TestID = "x2" // another scheduler replica picked another random id
	if a.MsgID() != b.MsgID() || a.MsgID() != "sched:c:s:42" {
		t.Errorf("replicas of one slot must share a msg id: %q %q", a.MsgID(), b.MsgID())
	}
	r := TestScheduled{V: 1, TestID: "y", CheckID: "c", Site: "s", Kind: KindRoundTrip, Attempt: 2, Reason: ReasonRetest, OriginTestID: "x1", ScheduledAt: at}
	if r.MsgID() != "retest:x1:s:2" {
		t.Errorf("retest msg id %q", r.MsgID())
	}
	res := CheckResult{TestID: "x1"}
	late := CheckResult{TestID: "x1", Revision: 2}
	if res.MsgID() == late.MsgID() {
		t.Error("a late update must not be deduplicated against the verdict")
	}
}

func TestDecode(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	in := MailReturned{V: SchemaVersion, TestID: "t", CheckID: "c", Site: "s", Attempt: 1, StartedAt: at, ReceivedAt: at.Add(time.Second), Via: "smtp"}
	data, _ := json.Marshal(in)
	out, err := Decode[MailReturned](data)
	if err != nil {
		t.Fatal(err)
	}
	if out.ReceivedAt != in.ReceivedAt || out.TestID != "t" {
		t.Errorf("round trip: %+v", out)
	}
	// Unknown fields from a newer minor version are ignored.
	withExtra := bytes.Replace(data, []byte(`{"v":1,`), []byte(`{"v":1,"future":true,`), 1)
	if _, err := Decode[MailReturned](withExtra); err != nil {
		t.Errorf("unknown field refused: %v", err)
	}
	for name, bad := range map[string]string{
		"not json":      `{`,
		"version 2":     `{"v":2,"test_id":"t","check_id":"c","site":"s"}`,
		"no version":    `{"test_id":"t"}`,
		"missing times": `{"v":1,"test_id":"t","check_id":"c","site":"s"}`,
		"bad site":      `{"v":1,"test_id":"t","check_id":"c","site":"S.x","started_at":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z"}`,
	} {
		if _, err := Decode[MailReturned]([]byte(bad)); !errors.Is(err, ErrEvent) {
			t.Errorf("%s: err = %v, want ErrEvent", name, err)
		}
	}
}

func TestTLSVersionName(t *testing.T) {
	for v, want := range map[uint16]string{tls.VersionTLS12: "TLS1.2", tls.VersionTLS13: "TLS1.3", 0x0305: "0x0305"} {
		if got := TLSVersionName(v); got != want {
			t.Errorf("TLSVersionName(%#x) = %q, want %q", v, got, want)
		}
	}
}

func TestNewTestID(t *testing.T) {
	id, err := NewTestID(bytes.NewReader(bytes.Repeat([]byte{0xab}, 15)))
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != TestIDLen || !ValidTestID(id) || !ValidToken(id) {
		t.Errorf("id %q has the wrong shape", id)
	}
	if _, err := NewTestID(bytes.NewReader(nil)); err == nil {
		t.Error("short random source accepted")
	}
}

// TestNotificationSubjects: each outcome has its own subject, and every one
// parses back.
func TestNotificationSubjects(t *testing.T) {
	for outcome, want := range map[string]string{
		NotifySent:       "notification.sent.acme-mx",
		NotifyFailed:     "notification.failed.acme-mx",
		NotifySuppressed: "notification.suppressed.acme-mx",
	} {
		n := Notification{V: 1, IncidentID: "i1", CheckID: "acme-mx", Outcome: outcome}
		if err := n.Validate(); err != nil {
			t.Errorf("%s: %v", outcome, err)
		}
		if got := n.Subject(); got != want {
			t.Errorf("%s: subject %q, want %q", outcome, got, want)
		}
		if s, err := ParseSubject(want); err != nil || s.Check != "acme-mx" {
			t.Errorf("ParseSubject(%q) = %+v, %v", want, s, err)
		}
	}
	if err := (Notification{V: 1, IncidentID: "i1", CheckID: "acme-mx", Outcome: "maybe"}).Validate(); !errors.Is(err, ErrEvent) {
		t.Errorf("unknown outcome accepted: %v", err)
	}
}

func TestStoredSubject(t *testing.T) {
	for in, want := range map[string]string{
		"mail.sent.eu.acme-rt":       "mail.sent.eu.acme-rt." + strconv.Itoa(PartitionOf("acme-rt")),
		"mail.sent.eu.acme-rt.3":     "mail.sent.eu.acme-rt.3", // already stored
		"incident.open.acme-rt":      "incident.open.acme-rt",
		"monitor.health.eu":          "monitor.health.eu",
		"not.a.subject.of.ours.at.a": "not.a.subject.of.ours.at.a",
	} {
		if got := StoredSubject(in); got != want {
			t.Errorf("StoredSubject(%q) = %q, want %q", in, got, want)
		}
	}
}
