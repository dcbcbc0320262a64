package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
)

func TestRouterDispatchesByType(t *testing.T) {
	r := platform.NewRouter()
	var got []string
	platform.On(r, func(_ context.Context, ev *events.MailReturned) error {
		got = append(got, "returned:"+ev.TestID)
		return nil
	})
	platform.On(r, func(_ context.Context, ev *events.Notification) error {
		got = append(got, "notification:"+ev.Outcome)
		return nil
	})
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev := returned("t1")
	data, _ := json.Marshal(ev)
	if err := r.Dispatch(ctx, ev.Subject(), data); err != nil {
		t.Fatal(err)
	}
	// One handler takes all three names of Notification.
	for _, outcome := range []string{events.NotifySent, events.NotifyFailed, events.NotifySuppressed} {
		n := events.Notification{V: 1, IncidentID: "i", CheckID: "c", Outcome: outcome}
		data, _ := json.Marshal(n)
		if err := r.Dispatch(ctx, n.Subject(), data); err != nil {
			t.Fatalf("%s: %v", n.Subject(), err)
		}
	}
	want := []string{"returned:t1", "notification:sent", "notification:failed", "notification:suppressed"}
	if !slices.Equal(got, want) {
		t.Errorf("handled %v, want %v", got, want)
	}
	wantNames := []string{events.SubjectMailReturned, events.SubjectNotificationSent, events.SubjectNotificationFailed, events.SubjectNotificationSuppressed}
	if !slices.Equal(r.Names(), wantNames) {
		t.Errorf("Names() = %v, want %v", r.Names(), wantNames)
	}
}

func TestRouterRefusesWhatItCannotHandle(t *testing.T) {
	r := platform.NewRouter()
	called := false
	platform.On(r, func(_ context.Context, _ *events.MailReturned) error { called = true; return nil })
	good, _ := json.Marshal(returned("t1"))
	for name, tc := range map[string]struct {
		subject string
		data    []byte
	}{
		"subject without a handler": {"mail.sent.s.c", good},
		"unknown subject name":      {"mail.lost.s.c", good},
		"bad routing token":         {"mail.returned.S!.c", good},
		"malformed JSON":            {"mail.returned.s.c", []byte("{")},
		"invalid event":             {"mail.returned.s.c", []byte(`{"v":1,"test_id":"t","check_id":"c","site":"s"}`)},
	} {
		err := r.Dispatch(context.Background(), tc.subject, tc.data)
		if !fault.MarkedPermanent(err) {
			t.Errorf("%s: err = %v, want a permanent error (terminated)", name, err)
		}
	}
	if called {
		t.Error("the handler ran for a message it cannot have")
	}
	// A handler's own error is passed on as it is.
	boom := errors.New("kv away")
	platform.On(r, func(_ context.Context, _ *events.MailSent) error { return boom })
	sent := events.MailSent{V: 1, TestID: "t1", CheckID: "c", Site: "s", Status: events.SentOK, StartedAt: time.Now()}
	data, _ := json.Marshal(sent)
	if err := r.Dispatch(context.Background(), sent.Subject(), data); !errors.Is(err, boom) || fault.MarkedPermanent(err) {
		t.Errorf("handler error = %v, want %v unmarked (redelivered)", err, boom)
	}
}

func TestRouterFilterSubjects(t *testing.T) {
	r := platform.NewRouter()
	if _, err := r.FilterSubjects(""); err == nil {
		t.Error("a router without handlers must not give a filter (it would consume nothing or everything)")
	}
	platform.On(r, func(context.Context, *events.TestScheduled) error { return nil })
	platform.On(r, func(context.Context, *events.MailSent) error { return nil })
	all, err := r.FilterSubjects("")
	if err != nil || !slices.Equal(all, []string{"test.scheduled.>", "mail.sent.>"}) {
		t.Errorf("FilterSubjects(\"\") = %v, %v", all, err)
	}
	site, err := r.FilterSubjects("eu-west")
	if err != nil || !slices.Equal(site, []string{"test.scheduled.eu-west.>", "mail.sent.eu-west.>"}) {
		t.Errorf("FilterSubjects(eu-west) = %v, %v", site, err)
	}
	platform.On(r, func(context.Context, *events.IncidentOpen) error { return nil })
	if _, err := r.FilterSubjects("eu-west"); err == nil || !strings.Contains(err.Error(), "incident.open") {
		t.Errorf("a check-routed name narrowed to a site: err = %v, want one naming incident.open", err)
	}
}

func TestRouterRefusesTwoHandlersForOneName(t *testing.T) {
	r := platform.NewRouter()
	platform.On(r, func(context.Context, *events.MailSent) error { return nil })
	platform.On(r, func(context.Context, *events.MailSent) error { return nil })
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "mail.sent") {
		t.Fatalf("Err() = %v, want two handlers for mail.sent", err)
	}
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	if _, err := platform.NewConsumer(platform.ConsumerConfig{Def: events.ConsumerDef{Durable: "x"}, Router: r},
		platform.ConsumerDeps{JS: js}); err == nil {
		t.Error("NewConsumer accepted a router with two handlers for one name")
	}
}

// TestConsumerBindsTheRoutersSubjects: the durable consumer on the server
// filters exactly the router's names (narrowed to the site), readiness
// follows the binding, handlers get the delivery count, and Stopping
// closes when the consumer shuts down while the handler's own context
// stays alive.
func TestConsumerBindsTheRoutersSubjects(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))
	defer cancel()
	pub := platform.JetStreamPublisher{JS: js}

	r := platform.NewRouter()
	started := make(chan struct{})
	var mu sync.Mutex
	var delivered uint64
	var handlerCtxErr error
	finished := make(chan struct{})
	platform.On(r, func(hctx context.Context, ev *events.MailReturned) error {
		mu.Lock()
		delivered = platform.Delivered(hctx)
		mu.Unlock()
		close(started)
		<-platform.Stopping(hctx) // the consumer is shutting down
		mu.Lock()
		handlerCtxErr = hctx.Err()
		mu.Unlock()
		close(finished)
		return nil
	})
	h := platform.NewHealth()
	def := events.ConsumerDef{Durable: "t-site", Site: "s", AckWait: 5 * time.Second, MaxAckPending: 10, MaxDeliver: -1}
	c, err := platform.NewConsumer(platform.ConsumerConfig{Def: def, Router: r, Key: platform.KeyByMsgID},
		platform.ConsumerDeps{JS: js, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Ready(); err == nil || !strings.Contains(err.Error(), "consumer:t-site") {
		t.Errorf("before Run: Ready() = %v, want consumer:t-site not bound", err)
	}
	other := returned("elsewhere")
	other.Site = "other"
	for _, ev := range []events.MailReturned{other, returned("mine")} {
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never ran")
	}
	info, err := js.Consumer(ctx, events.StreamName, "t-site")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := info.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ci.Config.FilterSubjects; !slices.Equal(got, []string{"mail.returned.s.>"}) {
		t.Errorf("server-side filter %v, want [mail.returned.s.>]", got)
	}
	if err := h.Ready(); err != nil {
		t.Errorf("bound: Ready() = %v", err)
	}
	cancel()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Stopping never closed")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if delivered != 1 || handlerCtxErr != nil {
		t.Errorf("delivered %d, handler context error %v; want 1 and a live context", delivered, handlerCtxErr)
	}
	if ci.NumPending != 0 || ci.NumAckPending != 1 {
		t.Errorf("pending %d, ack pending %d; want 0 and 1 (the other site's event is not the consumer's)", ci.NumPending, ci.NumAckPending)
	}
}
