package recorder_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// memWriter is a Writer that keeps batches in memory and fails while down
// is set. ClickHouse itself is tested under the integration build tag.
type memWriter struct {
	mu      sync.Mutex
	down    error
	batches []recorder.Rows
	calls   int
}

func (w *memWriter) Insert(_ context.Context, rows *recorder.Rows) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.down != nil {
		return w.down
	}
	w.batches = append(w.batches, *rows)
	return nil
}

func (w *memWriter) Ping(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.down
}

func (w *memWriter) setDown(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.down = err
}

func (w *memWriter) snapshot() (batches []recorder.Rows, calls int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]recorder.Rows(nil), w.batches...), w.calls
}

func result(i int) events.CheckResult {
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	rtt := int64(1000 + i)
	return events.CheckResult{
		V: 1, TestID: fmt.Sprintf("unit%020d", i), CheckID: "acme-roundtrip", Customer: "acme", Site: "eu-west",
		Kind: events.KindRoundTrip, Attempt: 1, Status: events.StatusOK, Revision: 1,
		StartedAt: start, FinishedAt: start.Add(time.Second), RTTMS: &rtt,
	}
}

type harness struct {
	t      *testing.T
	ctx    context.Context
	js     jetstream.JetStream
	clock  *clockwork.FakeClock
	w      *memWriter
	reg    *prometheus.Registry
	health *platform.Health
	done   chan error
	cancel context.CancelFunc
}

func newHarness(t *testing.T, cfg recorder.Config) *harness {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	h := &harness{t: t, js: js, clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)),
		w: &memWriter{}, reg: prometheus.NewRegistry(), health: platform.NewHealth(), done: make(chan error, 1)}
	cfg.DSN = "clickhouse://127.0.0.1:9000/unused"
	r, err := recorder.New(cfg, recorder.Deps{JS: js, Writer: h.w, Clock: h.clock, Registerer: h.reg, Health: h.health})
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, h.cancel = context.WithCancel(natstest.Context(t))
	h.ctx = natstest.Context(t)
	go func() { h.done <- r.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

func (h *harness) publish(evs ...events.Event) {
	h.t.Helper()
	pub := platform.JetStreamPublisher{JS: h.js}
	for _, ev := range evs {
		if _, err := pub.Publish(h.ctx, ev); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) gauge(name string) float64 {
	h.t.Helper()
	return testkit.MustMetric(h.t, h.reg, name, nil)
}

// waitFor polls cond every 10 ms until it holds or the test's context
// ends (the outcome of work on other goroutines; no timing is asserted).
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	for !cond() {
		select {
		case <-h.ctx.Done():
			h.t.Fatalf("gave up waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *harness) consumerInfo() *jetstream.ConsumerInfo {
	h.t.Helper()
	cons, err := h.js.Consumer(h.ctx, events.StreamName, events.RecorderConsumer().Durable)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := cons.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return info
}

// TestBatchBySize: a batch is inserted as soon as it holds BatchSize rows,
// without waiting for BatchWait, and its messages are acked.
func TestBatchBySize(t *testing.T) {
	h := newHarness(t, recorder.Config{BatchSize: 5, BatchWait: 10 * time.Second})
	for i := range 12 {
		h.publish(result(i))
	}
	h.waitFor("two full batches", func() bool { b, _ := h.w.snapshot(); return len(b) == 2 })
	h.waitFor("two rows pending", func() bool { return h.gauge("scout_recorder_pending_rows") == 2 })
	batches, _ := h.w.snapshot()
	for i, b := range batches {
		if len(b.Results) != 5 {
			t.Errorf("batch %d has %d rows, want 5", i, len(b.Results))
		}
	}
	if got := batches[0].Results[0].TestID; got != result(0).TestID {
		t.Errorf("first row %s, want %s", got, result(0).TestID)
	}
	// The remaining 2 wait for BatchWait, measured from their first row.
	h.clock.Advance(10 * time.Second)
	h.waitFor("the partial batch", func() bool { b, _ := h.w.snapshot(); return len(b) == 3 })
	batches, _ = h.w.snapshot()
	if len(batches[2].Results) != 2 {
		t.Errorf("last batch has %d rows, want 2", len(batches[2].Results))
	}
	h.waitFor("every message acked", func() bool {
		info := h.consumerInfo()
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	if got := h.gauge("scout_recorder_rows_inserted_total"); got != 12 {
		t.Errorf("rows inserted metric %v, want 12", got)
	}
}

// TestBatchByTime: a partial batch is inserted BatchWait after its first
// row, not before.
func TestBatchByTime(t *testing.T) {
	h := newHarness(t, recorder.Config{BatchSize: 100, BatchWait: 2 * time.Second})
	h.publish(result(1), result(2), result(3))
	h.waitFor("three rows pending", func() bool { return h.gauge("scout_recorder_pending_rows") == 3 })
	h.clock.Advance(1999 * time.Millisecond)
	if b, calls := h.w.snapshot(); len(b) != 0 || calls != 0 {
		t.Fatalf("inserted %d batches (%d calls) before BatchWait", len(b), calls)
	}
	if info := h.consumerInfo(); info.NumAckPending != 3 {
		t.Errorf("ack pending %d before the insert, want 3 (no ack before ClickHouse has the rows)", info.NumAckPending)
	}
	h.clock.Advance(time.Millisecond)
	h.waitFor("the batch", func() bool { b, _ := h.w.snapshot(); return len(b) == 1 })
	batches, _ := h.w.snapshot()
	if n := len(batches[0].Results); n != 3 {
		t.Errorf("batch has %d rows, want 3", n)
	}
}

// TestEveryRecordedEventBecomesARow: a result, both incident transitions
// and the three notification outcomes (sent, failed and suppressed) each
// land as a row; none is terminated as malformed.
func TestEveryRecordedEventBecomesARow(t *testing.T) {
	h := newHarness(t, recorder.Config{BatchSize: 6, BatchWait: 10 * time.Second})
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	open := events.IncidentOpen{V: 1, IncidentID: "inc-1", CheckID: "acme-rt", Customer: "acme", Kind: events.KindRoundTrip,
		Severity: events.SeverityCritical, Since: at, OpenedAt: at}
	resolved := events.IncidentResolved{V: 1, IncidentID: "inc-1", CheckID: "acme-rt", Customer: "acme", Kind: events.KindRoundTrip,
		Severity: events.SeverityCritical, Since: at, OpenedAt: at, ResolvedAt: at.Add(time.Hour)}
	note := func(outcome string) events.Notification {
		return events.Notification{V: 1, IncidentID: "inc-1", CheckID: "acme-rt", Customer: "acme", Transition: "open",
			Contact: "ops-" + outcome, Address: "+15555550100", Provider: "twilio", Outcome: outcome, At: at, Reason: "maintenance"}
	}
	h.publish(result(1), open, resolved, note(events.NotifySent), note(events.NotifyFailed), note(events.NotifySuppressed))
	h.waitFor("one batch of six rows", func() bool { b, _ := h.w.snapshot(); return len(b) == 1 })
	b, _ := h.w.snapshot()
	if len(b[0].Results) != 1 || len(b[0].Incidents) != 2 || len(b[0].Notifications) != 3 {
		t.Fatalf("batch: %d results, %d incidents, %d notifications; want 1, 2, 3", len(b[0].Results), len(b[0].Incidents), len(b[0].Notifications))
	}
	var outcomes []string
	for _, n := range b[0].Notifications {
		outcomes = append(outcomes, n.Outcome)
	}
	if !slices.Equal(outcomes, []string{events.NotifySent, events.NotifyFailed, events.NotifySuppressed}) {
		t.Errorf("notification outcomes %v", outcomes)
	}
	if got := h.gauge("scout_recorder_events_malformed_total"); got != 0 {
		t.Errorf("%v events terminated as malformed, want 0", got)
	}
}

// TestInsertFailureKeepsBacklog: while ClickHouse fails, the batch is
// retried with backoff, nothing is acked, readiness fails and new messages
// stay in JetStream; after recovery every row lands and is acked.
func TestInsertFailureKeepsBacklog(t *testing.T) {
	h := newHarness(t, recorder.Config{BatchSize: 3, BatchWait: time.Second, MaxBackoff: 4 * time.Second})
	h.w.setDown(errors.New("dial tcp 127.0.0.1:9000: connect: connection refused"))
	for i := range 3 {
		h.publish(result(i))
	}
	h.waitFor("a failed insert", func() bool { _, calls := h.w.snapshot(); return calls >= 1 })
	if err := h.health.Ready(); err == nil || !strings.Contains(err.Error(), "clickhouse: dial tcp") {
		t.Errorf("readiness during the outage: %v, want the clickhouse error", err)
	}
	for i := 3; i < 10; i++ {
		h.publish(result(i))
	}
	// Retries follow the backoff on the (fake) clock: several failures,
	// nothing acked.
	for range 5 {
		_, before := h.w.snapshot()
		// Waiting on the clock: the readiness ticker and the backoff timer.
		if err := h.clock.BlockUntilContext(h.ctx, 2); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(4 * time.Second) // MaxBackoff

		h.waitFor("a retry", func() bool { _, calls := h.w.snapshot(); return calls > before })
	}
	info := h.consumerInfo()
	if info.AckFloor.Stream != 0 {
		t.Errorf("ack floor %d during the outage, want 0 (nothing acked)", info.AckFloor.Stream)
	}
	if got := h.gauge("scout_recorder_insert_failures_total"); got < 6 {
		t.Errorf("insert failures %v, want >= 6", got)
	}
	h.w.setDown(nil)
	for {
		b, _ := h.w.snapshot()
		n := 0
		for _, r := range b {
			n += len(r.Results)
		}
		if n == 10 {
			break
		}
		h.clock.Advance(time.Second)
		time.Sleep(5 * time.Millisecond)
		if h.ctx.Err() != nil {
			t.Fatalf("only %d of 10 rows inserted after recovery", n)
		}
	}
	h.waitFor("every message acked", func() bool {
		info := h.consumerInfo()
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	h.waitFor("ready again", func() bool { return h.health.Ready() == nil })
}

// TestMalformedEventsTerminated: undecodable events are terminated and
// counted; they never block the batch they arrive with.
func TestMalformedEventsTerminated(t *testing.T) {
	h := newHarness(t, recorder.Config{BatchSize: 2, BatchWait: time.Second})
	for subject, data := range map[string]string{
		"check.result.eu-west.acme": "{broken",
		"incident.open.acme":        `{"v":2,"incident_id":"i"}`,
		"notification.sent.acme":    `{"v":1,"incident_id":"","check_id":"acme","outcome":"sent"}`,
	} {
		if _, err := h.js.Publish(h.ctx, subject, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	h.publish(result(1), result(2))
	h.waitFor("the good batch", func() bool { b, _ := h.w.snapshot(); return len(b) == 1 })
	h.waitFor("three terminated", func() bool { return h.gauge("scout_recorder_events_malformed_total") == 3 })
	h.waitFor("nothing left", func() bool {
		info := h.consumerInfo()
		return info.NumAckPending == 0 && info.NumPending == 0
	})
}

// TestShutdownNaksUnsavedBatch: a batch that cannot be inserted when the
// recorder stops goes back to JetStream at once (nak), for the next
// recorder.
func TestShutdownNaksUnsavedBatch(t *testing.T) {
	h := newHarness(t, recorder.Config{BatchSize: 100, BatchWait: time.Second})
	h.w.setDown(errors.New("clickhouse down"))
	h.publish(result(1), result(2))
	h.waitFor("two rows pending", func() bool { return h.gauge("scout_recorder_pending_rows") == 2 })
	h.stop()
	if info := h.consumerInfo(); info.AckFloor.Stream != 0 {
		t.Errorf("ack floor %d: an event that is not in ClickHouse was acked", info.AckFloor.Stream)
	}
	// Nak'ed, not left to the 2-minute ack wait: a fresh pull gets both
	// at once, as redeliveries.
	cons, err := h.js.Consumer(h.ctx, events.StreamName, events.RecorderConsumer().Durable)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(2, jetstream.FetchMaxWait(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for msg := range b.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.NumDelivered < 2 {
			t.Errorf("message %d delivered %d times, want a redelivery", md.Sequence.Stream, md.NumDelivered)
		}
		n++
	}
	if n != 2 {
		t.Errorf("fetched %d events after the stop, want 2", n)
	}
}

// TestConsumerDeletedStopsRun: if the durable consumer disappears, Run
// returns an error (the service restarts and binds again) instead of
// running on without recording.
func TestConsumerDeletedStopsRun(t *testing.T) {
	h := newHarness(t, recorder.Config{BatchSize: 10, BatchWait: time.Second})
	h.publish(result(1))
	h.waitFor("one row pending", func() bool { return h.gauge("scout_recorder_pending_rows") == 1 })
	if err := h.js.DeleteConsumer(h.ctx, events.StreamName, events.RecorderConsumer().Durable); err != nil {
		t.Fatal(err)
	}
	// Bounded well before the test's context, so that its end cannot pass
	// for the recorder noticing.
	wait := time.NewTimer(time.Until(mustDeadline(h.ctx)) / 2)
	defer wait.Stop()
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "message stream ended") {
			t.Errorf("Run = %v, want the end of the message stream", err)
		}
	case <-wait.C:
		t.Fatal("Run goes on after its consumer was deleted")
	}
	h.cancel = nil // Run has returned
	if err := h.health.Ready(); err == nil || !strings.Contains(err.Error(), recorder.HealthConsumer) {
		t.Errorf("readiness %v, want the consumer reported", err)
	}
	// The row collected before was inserted on the way out.
	if b, _ := h.w.snapshot(); len(b) != 1 {
		t.Errorf("%d batches inserted on the way out, want 1", len(b))
	}
}

func mustDeadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
