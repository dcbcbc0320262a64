package sender_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/emersion/go-smtp"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

const site = "eu-west"

const returnAddr = "scout-return+eu-west@monitor.example"

const checkFile = `
sites: [eu-west, us-east]
checks:
  - id: acme-roundtrip
    customer: acme
    name: ACME round trip
    kind: roundtrip
    target: webscout@acme.example
  - id: initech-roundtrip
    customer: initech
    kind: roundtrip
    target: probe@initech.example
  - id: us-only
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
    sites: [us-east]
`

// keySpec is SCOUT_PROBE_KEYS for the tests: acme has a key, initech none.
const keySpec = "acme:acme-2026a:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc;globex:globex-1:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk"

var start = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// env is one test's world: an embedded JetStream, a fake clock at start,
// the check file and keys.
type env struct {
	t      testing.TB
	srv    *natstest.Server
	js     jetstream.JetStream
	clock  *clockwork.FakeClock
	checks *checks.File
	keys   *probemail.Keyring
	slot   int64
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newServiceEnv(t, checkFile)
}

// newServiceEnv is newEnv with another check file.
func newServiceEnv(t testing.TB, checkYAML string) *env {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	f, err := checks.Parse("checks.yaml", []byte(checkYAML))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := probemail.ParseKeys(keySpec)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, js: js, clock: clockwork.NewFakeClockAt(start), checks: f, keys: keys}
}

func relayConfig(addr string) sender.Config {
	return sender.Config{
		Site: site, ReturnAddress: returnAddr, VERP: true, ProbeKeys: keySpec,
		Delivery: sender.DeliveryRelay, RelayAddr: addr, RelayTLS: "none",
		MXPort: 25, SubmitTimeout: 10 * time.Second, Workers: 2,
	}
}

// running is a started Sender.
type running struct {
	s    *sender.Sender
	reg  *prometheus.Registry
	logs *testkit.LogBuffer
	stop func()
}

// start runs a Sender with cfg (deps tuned by tweak) until stop or the end
// of the test.
func (e *env) start(cfg sender.Config, tweak func(*sender.Deps)) *running {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	logs := &testkit.LogBuffer{}
	deps := sender.Deps{
		Checks: e.checks, JetStream: e.js, Publisher: platform.JetStreamPublisher{JS: e.js},
		Keyring: e.keys, Clock: e.clock, Registerer: reg,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tweak != nil {
		tweak(&deps)
	}
	s, err := sender.New(cfg, deps)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(natstest.Context(e.t))
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return &running{s: s, reg: reg, logs: logs, stop: stop}
}

// schedule publishes a test of check at site, scheduled now (fake clock)
// with a send window of window.
func (e *env) schedule(check, at string, window time.Duration) events.TestScheduled {
	e.t.Helper()
	e.slot++
	id, err := events.NewTestID(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clock.Now()
	ev := events.TestScheduled{
		V: events.SchemaVersion, TestID: id, CheckID: check, Site: at, Kind: events.KindRoundTrip,
		Attempt: 1, Reason: events.ReasonInterval, Slot: e.slot, ScheduledAt: now, NotAfter: now.Add(window),
	}
	e.publish(ev)
	return ev
}

func (e *env) publish(ev events.Event) {
	e.t.Helper()
	if _, err := (platform.JetStreamPublisher{JS: e.js}).Publish(natstest.Context(e.t), ev); err != nil {
		e.t.Fatal(err)
	}
}

// count returns the number of stored messages whose subject matches filter.
func (e *env) count(filter string) int {
	e.t.Helper()
	ctx := natstest.Context(e.t)
	st, err := e.js.Stream(ctx, events.StreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// waitSent waits until n mail.sent events are stored and returns them in
// stream order.
func (e *env) waitSent(n int) []events.MailSent {
	e.t.Helper()
	return readEvents[events.MailSent](e.t, e.js, events.SubjectMailSent+".>", n)
}

func readEvents[T any, P interface {
	*T
	events.Event
}](t testing.TB, js jetstream.JetStream, filter string, n int) []T {
	t.Helper()
	ctx := natstest.Context(t)
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			ev, err := events.Decode[T, P](msg.Data())
			if err != nil {
				t.Fatalf("%s: %v", msg.Subject(), err)
			}
			out = append(out, ev)
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d events on %s before the deadline", len(out), n, filter)
		}
	}
	return out
}

// waitMetric waits until the metric (by name and labels) has value want.
func waitMetric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string, want float64) {
	t.Helper()
	ctx := natstest.Context(t)
	for {
		if v, ok := testkit.Metric(t, reg, name, labels); ok && v == want {
			return
		}
		select {
		case <-ctx.Done():
			v, ok := testkit.Metric(t, reg, name, labels)
			t.Fatalf("%s%v = %v (present %v), want %v", name, labels, v, ok, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// relay is a real go-smtp server on 127.0.0.1 that accepts every message
// and can be shut down mid-test, after which its port refuses connections.
type relay struct {
	Addr string
	srv  *smtp.Server
	mu   sync.Mutex
	n    int
}

func startRelay(t testing.TB) *relay {
	t.Helper()
	r := &relay{}
	r.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &relaySession{r: r}, nil }))
	r.srv.Domain = "relay.monitor.example"
	r.srv.ReadTimeout, r.srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Addr = l.Addr().String()
	go func() { _ = r.srv.Serve(l) }()
	t.Cleanup(r.Close)
	return r
}

func (r *relay) Close() { _ = r.srv.Close() }

func (r *relay) messages() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

type relaySession struct{ r *relay }

func (s *relaySession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *relaySession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *relaySession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.r.mu.Lock()
	s.r.n++
	s.r.mu.Unlock()
	return nil
}
func (s *relaySession) Reset()        {}
func (s *relaySession) Logout() error { return nil }

func (e *env) publisherFor() platform.Publisher { return platform.JetStreamPublisher{JS: e.js} }

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }
