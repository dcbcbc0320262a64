package platform_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

func returned(id string) events.MailReturned {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	return events.MailReturned{V: 1, TestID: id, CheckID: "c", Site: "s", Attempt: 1, StartedAt: at, ReceivedAt: at.Add(time.Second), Via: "smtp"}
}

func TestPublishDeduplicates(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx := natstest.Context(t)
	pub := platform.JetStreamPublisher{JS: js}
	dup, err := pub.Publish(ctx, returned("t1"))
	if err != nil || dup {
		t.Fatalf("first publish: dup=%v err=%v", dup, err)
	}
	dup, err = pub.Publish(ctx, returned("t1"))
	if err != nil || !dup {
		t.Fatalf("second publish: dup=%v err=%v, want a duplicate", dup, err)
	}
	bad := returned("t2")
	bad.Site = "Not.Valid"
	if _, err := pub.Publish(ctx, bad); !fault.MarkedPermanent(err) {
		t.Errorf("invalid event: err = %v, want permanent", err)
	}
	st, _ := js.Stream(ctx, events.StreamName)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

// TestPublishAllInOrder: PublishAll stores more events than it keeps in
// flight, in their order, and reports each one's outcome in place: a
// duplicate id, an invalid event (permanent, and the others still
// stored), a stored one.
func TestPublishAllInOrder(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx := natstest.Context(t)
	pub := platform.JetStreamPublisher{JS: js}
	if _, err := pub.Publish(ctx, returned("t-dup")); err != nil {
		t.Fatal(err)
	}
	n := 600
	if n <= platform.PublishAllInFlight {
		t.Fatalf("%d events do not exceed the %d in flight", n, platform.PublishAllInFlight)
	}
	var evs []events.Event
	for i := range n {
		evs = append(evs, returned(fmt.Sprintf("t%04d", i)))
	}
	bad := returned("t-bad")
	bad.Site = "Not.Valid"
	evs = slices.Insert(evs, 7, events.Event(bad))
	evs = slices.Insert(evs, 300, events.Event(returned("t-dup")))
	out := pub.PublishAll(ctx, evs)
	if len(out) != len(evs) {
		t.Fatalf("%d outcomes for %d events", len(out), len(evs))
	}
	for i, p := range out {
		switch {
		case i == 7:
			if !fault.MarkedPermanent(p.Err) {
				t.Errorf("invalid event: err = %v, want permanent", p.Err)
			}
		case i == 300:
			if p.Err != nil || !p.Duplicate {
				t.Errorf("repeated id: %+v, want a duplicate", p)
			}
		case p.Err != nil || p.Duplicate:
			t.Errorf("event %d: %+v, want stored", i, p)
		}
	}
	c, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.FetchNoWait(n + 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, m.Headers().Get(jetstream.MsgIDHeader))
	}
	want := []string{returned("t-dup").MsgID()}
	for i := range n {
		want = append(want, returned(fmt.Sprintf("t%04d", i)).MsgID())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("stream holds %d events, want %d in the order published (first %.3q)", len(got), len(want), got[:min(len(got), 3)])
	}
}

// TestPublishAllStopsWithItsContext: once ctx has ended nothing more is
// sent, and every event not sent says why.
func TestPublishAllStopsWithItsContext(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))
	cancel()
	evs := []events.Event{returned("t1"), returned("t2")}
	for i, p := range (platform.JetStreamPublisher{JS: js}).PublishAll(ctx, evs) {
		if !errors.Is(p.Err, context.Canceled) {
			t.Errorf("event %d: err = %v, want context.Canceled", i, p.Err)
		}
	}
	st, err := js.Stream(natstest.Context(t), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(natstest.Context(t)); err != nil || info.State.Msgs != 0 {
		t.Fatalf("stream holds %+v (err %v), want nothing", info.State, err)
	}
}

// TestPublishAllDoesNotWaitForEachAck: every event is sent before the
// first acknowledgement comes back. The stand-in for the stream here (a
// core NATS responder on a subject no stream holds) acknowledges only
// once it has all of them, so a PublishAll that waited for each
// acknowledgement in turn would get none.
func TestPublishAllDoesNotWaitForEachAck(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv)
	const n = 50
	var mu sync.Mutex
	var held []*nats.Msg
	sub, err := nc.Subscribe("unstreamed.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if held = append(held, m); len(held) < n {
			return
		}
		for i, h := range held {
			_ = h.Respond(fmt.Appendf(nil, `{"stream":"X","seq":%d}`, i+1))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(natstest.Context(t), 5*time.Second)
	defer cancel()
	var evs []events.Event
	for i := range n {
		evs = append(evs, unstreamed{returned(fmt.Sprintf("t%d", i))})
	}
	for i, p := range (platform.JetStreamPublisher{JS: js}).PublishAll(ctx, evs) {
		if p.Err != nil {
			t.Fatalf("event %d: %v (waited for an acknowledgement before sending the next?)", i, p.Err)
		}
	}
}

// unstreamed is an event on a subject that no stream holds.
type unstreamed struct{ events.MailReturned }

func (u unstreamed) Subject() string { return "unstreamed." + u.TestID }

// TestConsumeAckSemantics: nil acks, a temporary error redelivers, a
// permanent error terminates (no redelivery).
func TestConsumeAckSemantics(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))
	defer cancel()
	pub := platform.JetStreamPublisher{JS: js}
	for _, id := range []string{"ok", "flaky", "poison"} {
		if _, err := pub.Publish(ctx, returned(id)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := platform.BindConsumer(ctx, js, events.ConsumerDef{Durable: "t", AckWait: 5 * time.Second, MaxAckPending: 10, MaxDeliver: -1}, []string{"mail.>"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan struct{})
	reg := prometheus.NewRegistry()
	h := func(_ context.Context, msg jetstream.Msg) error {
		ev, err := events.Decode[events.MailReturned](msg.Data())
		if err != nil {
			return err
		}
		mu.Lock()
		seen[ev.TestID]++
		n := seen[ev.TestID]
		if seen["ok"] == 1 && seen["flaky"] == 2 && seen["poison"] == 1 {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		mu.Unlock()
		switch {
		case ev.TestID == "flaky" && n == 1:
			return errors.New("temporary trouble")
		case ev.TestID == "poison":
			return fault.Permanent(errors.New("never"))
		}
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		errc <- platform.Consume(ctx, cons, h, platform.ConsumeOptions{Name: "t", Workers: 2, Registerer: reg})
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("handled %v", seen)
	}
	// Give a wrongly redelivered poison message time to show up.
	time.Sleep(time.Second)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["poison"] != 1 || seen["flaky"] != 2 || seen["ok"] != 1 {
		t.Errorf("deliveries %v, want ok 1, flaky 2, poison 1", seen)
	}
	if got := testkit.MustMetric(t, reg, "scout_consumer_messages_total", map[string]string{"outcome": "term"}); got != 1 {
		t.Errorf("term count %v", got)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	h := platform.NewHealth()
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(platform.HTTPHandler(h, reg))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz with no checks = %d", code)
	}
	h.Set("consumer:sender-eu", errors.New("not bound"))
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "consumer:sender-eu: not bound") {
		t.Errorf("readyz = %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz = %d", code)
	}
	if code, _ := get("/metrics"); code != 200 {
		t.Errorf("metrics = %d", code)
	}
}

func TestLoadEnv(t *testing.T) {
	env := map[string]string{"SCOUT_NATS_URL": "nats://n:4222", "SCOUT_SHUTDOWN_TIMEOUT": "5s"}
	cfg, err := platform.LoadEnv[platform.Base](func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATSURL != "nats://n:4222" || cfg.ShutdownTimeout != 5*time.Second || cfg.HTTPAddr != ":9090" {
		t.Errorf("cfg = %+v", cfg)
	}
	env["SCOUT_SHUTDOWN_TIMEOUT"] = "soon"
	if _, err := platform.LoadEnv[platform.Base](func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), `SCOUT_SHUTDOWN_TIMEOUT="soon": unable to parse duration`) {
		t.Errorf("bad duration: %v", err)
	}
}

func TestNakDelay(t *testing.T) {
	for n, want := range map[uint64]time.Duration{1: 250 * time.Millisecond, 3: time.Second, 20: time.Minute} {
		got := platform.NakDelay(n, time.Minute)
		if got > want || got < want*8/10 {
			t.Errorf("NakDelay(%d) = %v, want %v minus up to 20%%", n, got, want)
		}
	}
}

// TestHealthConcurrentSet: components report their state while /readyz
// reads it (run with -race).
func TestHealthConcurrentSet(t *testing.T) {
	h := platform.NewHealth()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			if i%2 == 0 {
				h.Set("clickhouse", errors.New("down"))
			} else {
				h.Set("clickhouse", nil)
			}
		}
	})
	for range 1000 {
		if err := h.Ready(); err != nil && !strings.Contains(err.Error(), "clickhouse: down") {
			t.Fatalf("Ready = %v", err)
		}
	}
	wg.Wait()
}

// TestServeListener serves on a listener the caller opened and stops, with
// the listener closed, when the context ends.
func TestServeListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(natstest.Context(t))
	done := make(chan error, 1)
	go func() {
		done <- platform.ServeListener(ctx, l, platform.HTTPHandler(platform.NewHealth(), prometheus.NewRegistry()), time.Second, slog.New(slog.DiscardHandler))
	}()
	resp, err := http.Get("http://" + l.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("healthz = %d %q", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeListener = %v after the context ended, want nil", err)
	}
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener still accepts connections")
	}
}

func TestRegister(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total"})
	if err := platform.Register(nil, c); err != nil {
		t.Errorf("nil registerer: %v", err)
	}
	reg := prometheus.NewRegistry()
	if err := platform.Register(reg, c); err != nil {
		t.Fatal(err)
	}
	again := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total"})
	var are prometheus.AlreadyRegisteredError
	if err := platform.Register(reg, again); !errors.As(err, &are) {
		t.Errorf("second x_total: %v, want AlreadyRegisteredError", err)
	}
}

// TestProvisionAddsNewSubjects: a stream provisioned by an older release
// (without a subject a newer event needs) gains the missing subjects when a
// service starts, keeps its other settings, and keeps its messages.
func TestProvisionAddsNewSubjects(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := natstest.Context(t)
	old := platform.StreamConfig(platform.ProvisionOptions{MaxAge: 48 * time.Hour})
	old.Subjects = []string{"test.>", "mail.>"}
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "mail.sent.s.c", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range events.StreamSubjects {
		if !slices.Contains(info.Config.Subjects, subj) {
			t.Errorf("stream subjects %v lack %s", info.Config.Subjects, subj)
		}
	}
	if info.Config.MaxAge != 48*time.Hour || info.State.Msgs != 1 {
		t.Errorf("max age %v, %d messages; want the old 48h and the 1 message kept", info.Config.MaxAge, info.State.Msgs)
	}
	if _, err := js.Publish(ctx, "service.checked.s.c", []byte("{}")); err != nil {
		t.Errorf("publish on a new subject: %v", err)
	}
}

// TestProvisionPartitionsAnOldStream: a stream made before partitions gets
// the partition transform from a starting service (Provision without
// Update), and the provisioning job (Update) deletes the retired pinned
// evaluator consumer; events stored before keep their subject.
func TestProvisionPartitionsAnOldStream(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx := natstest.Context(t)
	if err := js.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	old := platform.StreamConfig(platform.ProvisionOptions{})
	old.SubjectTransform = nil
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	before, err := js.Publish(ctx, "mail.sent.s.c", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: "evaluator", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	after, err := js.Publish(ctx, "mail.sent.s.c", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{before.Sequence: "mail.sent.s.c", after.Sequence: events.StoredSubject("mail.sent.s.c")} {
		if raw, err := st.GetMsg(ctx, seq); err != nil || raw.Subject != want {
			t.Errorf("message %d stored on %q (%v), want %q", seq, raw.Subject, err, want)
		}
	}
	if _, err := js.Consumer(ctx, events.StreamName, "evaluator"); err != nil {
		t.Fatalf("a starting service deleted a consumer: %v", err)
	}
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: 1, Update: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Consumer(ctx, events.StreamName, "evaluator"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the retired consumer after provisioning: %v, want it deleted", err)
	}
}
