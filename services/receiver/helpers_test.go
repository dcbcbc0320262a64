package receiver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	site       = "eu-west"
	returnAddr = "scout-return+eu-west@monitor.example"
	target     = "webscout@acme.example"
	keySpec    = "acme:acme-2026a:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc;globex:globex-1:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk"
)

const checkFile = `
sites: [eu-west, us-east]
checks:
  - id: acme-roundtrip
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
  - id: globex-roundtrip
    customer: globex
    kind: roundtrip
    target: probe@globex.example
`

var (
	now     = time.Date(2026, 5, 1, 14, 0, 4, 0, time.UTC)
	acmeKey = probemail.Key{ID: "acme-2026a", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{7}, 32))}
	globex  = probemail.Key{ID: "globex-1", Customer: "globex", Secret: probemail.Secret(bytes.Repeat([]byte{9}, 32))}
)

// testID returns a fresh random test id.
func testID(t testing.TB) string {
	id, err := events.NewTestID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// probe returns a probe of acme-roundtrip from site us-east, started 4s
// before now (docs/field-cases.md, c11: true start 14:00:00Z, return 14:00:04Z).
func probe(t testing.TB) probemail.Probe {
	return probemail.Probe{
		KeyID: acmeKey.ID, TestID: testID(t), CheckID: "acme-roundtrip", Site: "us-east", Attempt: 2,
		StartedAt: now.Add(-4 * time.Second), ReturnTo: returnAddr,
	}
}

// reflection builds p signed with key for target and reflects it as the
// reflector does, stamped at reflectedAt; probeTo is the address the
// reflector says the probe came to ("" leaves X-Scout-Probe-To out).
func reflection(t testing.TB, p probemail.Probe, key probemail.Key, probeTo string, reflectedAt time.Time) []byte {
	t.Helper()
	msg, err := probemail.Build(p, target, key, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	to := probeTo
	if to == "" {
		to = target
	}
	out, err := probemail.Reflect(msg, p, to, target, reflectedAt)
	if err != nil {
		t.Fatal(err)
	}
	if probeTo == "" {
		out = dropHeader(out, probemail.HeaderProbeTo)
	}
	return out
}

func dropHeader(msg []byte, name string) []byte {
	var out [][]byte
	for _, l := range bytes.SplitAfter(msg, []byte("\r\n")) {
		if bytes.HasPrefix(bytes.ToLower(l), []byte(strings.ToLower(name)+":")) {
			continue
		}
		out = append(out, l)
	}
	return bytes.Join(out, nil)
}

type env struct {
	t      testing.TB
	srv    *natstest.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	clock  *clockwork.FakeClock
	checks *checks.File
	keys   *probemail.Keyring
	txt    dnsTXT // DKIM keys the receiver finds in "DNS"
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvAt(t, natstest.Start(t))
}

func newEnvAt(t testing.TB, srv *natstest.Server) *env {
	t.Helper()
	nc, js := natstest.Connect(t, srv)
	f, err := checks.Parse("checks.yaml", []byte(checkFile))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := probemail.ParseKeys(keySpec)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, nc: nc, js: js, clock: clockwork.NewFakeClockAt(now), checks: f, keys: keys}
}

func config() receiver.Config {
	return receiver.Config{
		Site: site, Mode: "smtp", Listen: "127.0.0.1:0", ReturnAddresses: []string{returnAddr, "scout-return+us-east@monitor.example"},
		ProbeKeys: keySpec, MaxBytes: probemail.MaxMessageBytes, MaxAge: 48 * time.Hour,
		Timeout: 10 * time.Second, StoreTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second,
		MaxConnections: 1000, MaxConnectionsPerIP: 50,
	}
}

// dnsTXT serves TXT records to the receiver (Deps.LookupTXT) in tests that
// set env.txt.
type dnsTXT map[string]string

func (d dnsTXT) lookup(name string) ([]string, error) {
	if r, ok := d[name]; ok {
		return []string{r}, nil
	}
	return nil, fmt.Errorf("no TXT record for %s", name)
}

type running struct {
	r      *receiver.Receiver
	addr   string
	reg    *prometheus.Registry
	logs   *testkit.LogBuffer
	health *platform.Health
	stop   func()
}

// start runs a Receiver (SMTP mode: on 127.0.0.1:0) until stop or the end
// of the test.
func (e *env) start(cfg receiver.Config) *running {
	e.t.Helper()
	var l net.Listener
	if cfg.Mode != receiver.ModeIMAP {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			e.t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	logs := &testkit.LogBuffer{}
	health := platform.NewHealth()
	r, err := receiver.New(cfg, receiver.Deps{
		Checks: e.checks, Publisher: platform.JetStreamPublisher{JS: e.js}, Keyring: e.keys,
		Listener: l, Clock: e.clock, Registerer: reg, Health: health, LookupTXT: e.txt.lookup, Sent: platform.NATSSubscriber{NC: e.nc},
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := health.Ready(); err == nil {
		e.t.Error("ready before Run")
	}
	ctx, cancel := context.WithCancel(natstest.Context(e.t))
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run: %v", err)
			}
			if err := health.Ready(); err == nil {
				e.t.Error("ready after Run returned")
			}
		})
	}
	e.t.Cleanup(stop)
	run := &running{r: r, reg: reg, logs: logs, health: health, stop: stop}
	if a := r.Addr(); a != nil {
		run.addr = a.String()
	}
	return run
}

// send delivers msg from the envelope sender from to rcpt, as an MTA does,
// and returns the server's reply (the 250 or the refusal) and the phase of
// a refusal.
func send(t testing.TB, addr, from, rcpt string, msg []byte) (*events.SMTPReply, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(natstest.Context(t), 20*time.Second)
	defer cancel()
	res, err := submit.Send(ctx, submit.Config{Addr: addr, TLS: submit.TLSNone, HelloName: "mx.acme.example"}, from, []string{rcpt}, msg)
	if err == nil {
		return res.Reply, ""
	}
	var se *submit.Error
	if !errors.As(err, &se) || se.Reply == nil {
		t.Fatalf("send: %v", err)
	}
	return se.Reply, se.Phase
}

// count returns the number of mail.returned events stored.
func (e *env) count() int {
	e.t.Helper()
	ctx := natstest.Context(e.t)
	st, err := e.js.Stream(ctx, events.StreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(events.SubjectMailReturned+".>"))
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// returned reads the stored mail.returned events and their subjects.
func (e *env) returned(n int) ([]events.MailReturned, []string) {
	e.t.Helper()
	ctx := natstest.Context(e.t)
	cons, err := e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectMailReturned + ".>"}})
	if err != nil {
		e.t.Fatal(err)
	}
	var evs []events.MailReturned
	var subjects []string
	for len(evs) < n {
		batch, err := cons.Fetch(n-len(evs), jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			e.t.Fatal(err)
		}
		for msg := range batch.Messages() {
			ev, err := events.Decode[events.MailReturned](msg.Data())
			if err != nil {
				e.t.Fatal(err)
			}
			evs = append(evs, ev)
			subjects = append(subjects, msg.Subject())
		}
		if ctx.Err() != nil {
			e.t.Fatalf("%d of %d mail.returned", len(evs), n)
		}
	}
	return evs, subjects
}
