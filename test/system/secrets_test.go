package system

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The secrets of TestSecretsNeverLeak: every credential the services
// hold, each a distinctive string.
const (
	leakProbeSecret  = "S0xFQUstcHJvYmUta2V5LWFjbWUtMDEyMzQ1Njc4OWFiY2RlZg" // base64 of 37 bytes
	leakRelayUser    = "scout-relay"
	leakRelayPass    = "relay-pass-Vq8ZmT3xKc"
	leakIMAPBadPass  = "imap-wrong-pass-Hn4RwY7pLd"
	leakTwilioSID    = "AC0123456789abcdef0123456789abcdef"
	leakTwilioToken  = "f3e9c1a7b5d2f4e6a8c0b1d3e5f7a9c2"
	leakProbeKeySpec = "acme:acme-leak:" + leakProbeSecret
)

// TestSecretsNeverLeak (issue 17, part 5) runs the round trip and the
// service checks with known credentials through the real sender, receiver,
// evaluator and notifier on one embedded NATS server: probes signed with a
// known key go through a relay that demands AUTH PLAIN with a known
// password, are reflected by pkg/reflector and come back to the receiver
// over SMTP; an IMAP check logs in with its password, another with a wrong
// one (a failure, whose evidence is the dialogue); the failure opens an
// incident and the notifier sends the SMS through a fake Twilio that
// demands the account's auth token. Then it takes everything the system
// wrote: every log line (debug level), every metric of every service (the
// text exposition), every message of every stream (the events and the KV
// buckets, with their headers), and the ClickHouse rows the recorder
// makes of the events (recorder.ResultRowFrom, IncidentOpenRow,
// NotificationRowFrom), and fails if any secret appears in them, as
// written, base64-encoded in any alphabet, or (a probe key) decoded, in
// hex or base64.
func TestSecretsNeverLeak(t *testing.T) {
	keys, err := probemail.ParseKeys(leakProbeKeySpec)
	if err != nil {
		t.Fatal(err)
	}
	const target, returnAddr = "webscout@acme.test", "scout-return+leak@monitor.test"
	imapAddr := probetest.IMAPServer(t, nil, false)
	imapHost, imapPort, _ := net.SplitHostPort(imapAddr)
	f, err := checks.Parse("checks.yaml", []byte(fmt.Sprintf(`
sites: [leak]
defaults:
  interval: 1h
  timeout: 1m
  slow: 30s
  retries: 0
  quorum: 1
checks:
  - id: acme-rt
    customer: acme
    kind: roundtrip
    target: %s
  - id: acme-imap
    customer: acme
    kind: imap
    host: %s
    port: %s
    tls: none
    username: %s
    password_env: LEAK_IMAP_PASSWORD
  - id: acme-imap-bad
    customer: acme
    kind: imap
    host: %s
    port: %s
    tls: none
    username: %s
    password_env: LEAK_IMAP_BAD_PASSWORD
    contacts:
      - name: ACME on-call
        phone: "+15555550100"
`, target, imapHost, imapPort, probetest.IMAPUser, imapHost, imapPort, probetest.IMAPUser)))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LEAK_IMAP_PASSWORD": probetest.IMAPPassword, "LEAK_IMAP_BAD_PASSWORD": leakIMAPBadPass}

	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	pub := platform.JetStreamPublisher{JS: js}
	logs := &testkit.LogBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	regs := map[string]*prometheus.Registry{}
	reg := func(name string) *prometheus.Registry { regs[name] = prometheus.NewRegistry(); return regs[name] }
	ctx, cancel := context.WithCancel(natstest.Context(t))
	var running sync.WaitGroup
	run := func(name string, c platform.Component) {
		running.Add(1)
		go func() {
			defer running.Done()
			if err := c.Run(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); running.Wait() })

	// The receiver.
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcfg := receiver.Defaults()
	rcfg.Site, rcfg.ReturnAddresses, rcfg.ProbeKeys, rcfg.DKIM = "leak", []string{returnAddr}, leakProbeKeySpec, false
	rcv, err := receiver.New(rcfg, receiver.Deps{Checks: f, Publisher: pub, Keyring: keys, Listener: rl,
		Logger: logger.With("service", "receiver"), Registerer: reg("receiver")})
	if err != nil {
		t.Fatal(err)
	}
	run("receiver", rcv)

	// Our relay and the customer's mailbox in one: AUTH PLAIN with the
	// relay password, then pkg/reflector answers the probe to the receiver.
	refl := reflector.New(reflector.Config{Keys: keys, Mailboxes: []string{target}, EnvelopeFrom: target},
		reflector.SMTP{Config: submit.Config{Addr: rl.Addr().String(), TLS: submit.TLSNone, HelloName: "mx.acme.test"}},
		reflector.NewMemorySeen(time.Now), time.Now)
	relay := startRelay(t, func(ctx context.Context, from string, msg []byte) error {
		d, err := refl.Handle(ctx, msg, from)
		if err == nil && d.Action != reflector.ActionReflect {
			err = fmt.Errorf("the reflector ignored the probe: %s (%s)", d.Reason, d.Detail)
		}
		return err
	})

	// The sender, the evaluator and the notifier.
	scfg := sender.Defaults()
	scfg.Site, scfg.ReturnAddress, scfg.ProbeKeys = "leak", returnAddr, leakProbeKeySpec
	scfg.RelayAddr, scfg.RelayTLS, scfg.RelayUsername, scfg.RelayPassword = relay.addr, "none", leakRelayUser, leakRelayPass
	scfg.HeloName, scfg.Workers = "leak.monitor.test", 2
	snd, err := sender.New(scfg, sender.Deps{Checks: f, JetStream: js, Publisher: pub, Keyring: keys,
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Logger:    logger.With("service", "sender"), Registerer: reg("sender")})
	if err != nil {
		t.Fatal(err)
	}
	run("sender", snd)
	ecfg := evaluator.Defaults()
	ecfg.Workers = 2
	ev, err := evaluator.New(ecfg, evaluator.Deps{Checks: f, JS: js, Logger: logger.With("service", "evaluator"), Registerer: reg("evaluator")})
	if err != nil {
		t.Fatal(err)
	}
	run("evaluator", ev)
	twilio := startTwilio(t)
	ncfg := notifier.Defaults()
	ncfg.Twilio = notifier.TwilioConfig{AccountSID: leakTwilioSID, AuthToken: leakTwilioToken, From: "+15555550199"}
	provider, err := notifier.NewProvider(ncfg, notifier.ProviderDeps{HTTPClient: &http.Client{Transport: twilio.transport()}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := notifier.New(ncfg, notifier.Deps{Checks: f, JS: js, Provider: provider, Logger: logger.With("service", "notifier"), Registerer: reg("notifier")})
	if err != nil {
		t.Fatal(err)
	}
	run("notifier", nt)

	// One test of each check, as the scheduler publishes them.
	now := time.Now().UTC()
	for i, c := range f.Checks {
		id, err := events.NewTestID(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, events.TestScheduled{V: events.SchemaVersion, TestID: id, CheckID: c.ID, Site: "leak", Kind: c.Kind,
			Attempt: 1, Reason: events.ReasonInterval, Slot: int64(i), ScheduledAt: now, NotAfter: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}

	// Wait for the whole story: a result per check and the SMS.
	var captured []capturedMsg
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		captured = captureStreams(t, js)
		if results(captured, "acme-rt", "acme-imap", "acme-imap-bad") && has(captured, events.SubjectNotificationSent) && twilio.sent() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("logs:\n%s", logs.String())
			t.Fatalf("after 60s: results %v, notification.sent %v, SMS %d", resultsOf(captured), has(captured, events.SubjectNotificationSent), twilio.sent())
		}
	}
	time.Sleep(200 * time.Millisecond) // the last log lines and metrics of the notifier
	captured = captureStreams(t, js)

	// What the system wrote.
	var metrics bytes.Buffer
	for name, r := range regs {
		mfs, err := r.Gather()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&metrics, "# %s\n", name)
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&metrics, mf); err != nil {
				t.Fatal(err)
			}
		}
	}
	var streams, rows bytes.Buffer
	for _, m := range captured {
		fmt.Fprintf(&streams, "%s %s %v %s\n", m.stream, m.subject, m.header, m.data)
		rows.WriteString(rowsOf(t, m))
	}
	outputs := map[string]string{"log lines": logs.String(), "metrics": metrics.String(), "NATS messages": streams.String(), "ClickHouse rows": rows.String()}

	// The capture is not empty: each output holds what a leak would sit
	// next to.
	for what, want := range map[string][]string{
		"log lines":       {`"msg":"return stored"`, `acme-imap-bad`},
		"metrics":         {"scout_receiver_returns_total", "scout_sender_", "scout_notifier_"},
		"NATS messages":   {"mail.returned.leak.acme-rt", "service.checked.leak.acme-imap-bad", "LOGIN", "KV_scout_notifications"},
		"ClickHouse rows": {"acme-rt", "acme-imap-bad", "LOGIN", "+15555550100"},
	} {
		for _, w := range want {
			if !strings.Contains(outputs[what], w) {
				t.Errorf("the %s do not hold %q: the capture missed something", what, w)
			}
		}
	}

	secret := leakForms(map[string]string{
		"probe key": leakProbeSecret, "relay password": leakRelayPass, "IMAP password": probetest.IMAPPassword,
		"wrong IMAP password": leakIMAPBadPass, "Twilio auth token": leakTwilioToken,
	})
	for name, raw := range map[string][]byte{"probe key": mustDecode(t, leakProbeSecret)} {
		for _, form := range []string{string(raw), hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw),
			base64.RawURLEncoding.EncodeToString(raw)} {
			secret[form] = name + " (decoded)"
		}
	}
	for _, auth := range [][2]string{{leakRelayUser, leakRelayPass}, {probetest.IMAPUser, probetest.IMAPPassword}} {
		blob := "\x00" + auth[0] + "\x00" + auth[1]
		secret[base64.StdEncoding.EncodeToString([]byte(blob))] = "AUTH PLAIN of " + auth[0]
	}
	for form, name := range secret {
		for what, out := range outputs {
			if i := strings.Index(out, form); i >= 0 {
				t.Errorf("the %s hold the %s (%q): ...%s...", what, name, form, out[max(0, i-120):min(len(out), i+len(form)+40)])
			}
		}
	}
	t.Logf("searched %d forms of 5 secrets in %d log bytes, %d metric bytes, %d NATS messages, %d row bytes; %d SMS sent",
		len(secret), len(outputs["log lines"]), metrics.Len(), len(captured), rows.Len(), twilio.sent())
}

// leakForms maps each secret, as written and in every base64 alphabet, to
// its name.
func leakForms(secrets map[string]string) map[string]string {
	forms := map[string]string{}
	for name, s := range secrets {
		forms[s] = name
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			forms[enc.EncodeToString([]byte(s))] = name + " (base64)"
		}
	}
	return forms
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// capturedMsg is one message of a stream.
type capturedMsg struct {
	stream, subject string
	header          map[string][]string
	data            []byte
}

// captureStreams reads every message of every stream (SCOUT and the KV
// buckets' streams).
func captureStreams(t *testing.T, js jetstream.JetStream) []capturedMsg {
	t.Helper()
	ctx := natstest.Context(t)
	var out []capturedMsg
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, capturedMsg{stream: name, subject: m.Subject, header: m.Header, data: m.Data})
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rowsOf returns the ClickHouse rows the recorder makes of m, printed.
func rowsOf(t *testing.T, m capturedMsg) string {
	t.Helper()
	if m.stream != events.StreamName {
		return ""
	}
	var row any
	var err error
	switch {
	case strings.HasPrefix(m.subject, events.SubjectCheckResult+"."):
		var e events.CheckResult
		if e, err = events.Decode[events.CheckResult](m.data); err == nil {
			row = recorder.ResultRowFrom(e)
		}
	case strings.HasPrefix(m.subject, events.SubjectIncidentOpen+"."):
		var e events.IncidentOpen
		if e, err = events.Decode[events.IncidentOpen](m.data); err == nil {
			row = recorder.IncidentOpenRow(e)
		}
	case strings.HasPrefix(m.subject, events.SubjectIncidentResolved+"."):
		var e events.IncidentResolved
		if e, err = events.Decode[events.IncidentResolved](m.data); err == nil {
			row = recorder.IncidentResolvedRow(e)
		}
	case strings.HasPrefix(m.subject, "notification."):
		var e events.Notification
		if e, err = events.Decode[events.Notification](m.data); err == nil {
			row = recorder.NotificationRowFrom(e)
		}
	default:
		return ""
	}
	if err != nil {
		t.Fatalf("%s: %v", m.subject, err)
	}
	b, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v\n%s\n", row, b)
}

// results reports whether a check.result of each check is captured.
func results(ms []capturedMsg, ids ...string) bool {
	got := resultsOf(ms)
	for _, id := range ids {
		if !got[id] {
			return false
		}
	}
	return true
}

func resultsOf(ms []capturedMsg) map[string]bool {
	got := map[string]bool{}
	for _, m := range ms {
		if m.stream != events.StreamName || !strings.HasPrefix(m.subject, events.SubjectCheckResult+".") {
			continue
		}
		if s, err := events.ParseSubject(m.subject); err == nil {
			got[s.Check] = true
		}
	}
	return got
}

func has(ms []capturedMsg, subject string) bool {
	for _, m := range ms {
		if m.stream == events.StreamName && strings.HasPrefix(m.subject, subject+".") {
			return true
		}
	}
	return false
}

// relay is a go-smtp server on 127.0.0.1 that takes mail only after AUTH
// PLAIN with leakRelayUser and leakRelayPass, and hands it to deliver.
type relay struct{ addr string }

func startRelay(t *testing.T, deliver func(ctx context.Context, from string, msg []byte) error) relay {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &relaySession{deliver: deliver}, nil
	}))
	srv.Domain, srv.AllowInsecureAuth = "relay.monitor.test", true // plain text on loopback only
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return relay{addr: l.Addr().String()}
}

type relaySession struct {
	deliver func(ctx context.Context, from string, msg []byte) error
	authed  bool
	from    string
}

func (s *relaySession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *relaySession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != leakRelayUser || pass != leakRelayPass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		s.authed = true
		return nil
	}), nil
}

func (s *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.from = from
	return nil
}

func (s *relaySession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (s *relaySession) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return s.deliver(ctx, s.from, msg)
}

func (s *relaySession) Reset()        { s.from = "" }
func (s *relaySession) Logout() error { return nil }

// fakeTwilio answers the Messages API on 127.0.0.1: 201 for requests with
// Basic auth leakTwilioSID:leakTwilioToken, 401 for others.
type fakeTwilio struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   int
}

func startTwilio(t *testing.T) *fakeTwilio {
	f := &fakeTwilio{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != leakTwilioSID || pass != leakTwilioToken {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"code":20003,"message":"Authenticate","status":401}`)
			return
		}
		f.mu.Lock()
		f.n++
		sid := fmt.Sprintf("SM%032d", f.n)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"sid":%q,"status":"queued"}`, sid)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTwilio) sent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// transport sends the requests for api.twilio.com to the fake (and
// refuses every other host).
func (f *fakeTwilio) transport() http.RoundTripper {
	base := f.srv.Client().Transport
	return roundTrip(func(req *http.Request) (*http.Response, error) {
		if req.URL.Host != "api.twilio.com" {
			return nil, fmt.Errorf("refusing a request to %s", req.URL.Host)
		}
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host = "http", strings.TrimPrefix(f.srv.URL, "http://")
		return base.RoundTrip(r)
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
