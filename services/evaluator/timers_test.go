package evaluator

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// TestTimersWatchEntryDoesNotUndoANewerWrite is the lost result of a chaos
// soak (CI, 2026-12-05): the KV watch decoded an attempt's first revision
// (the submission deadline) while the handlers wrote it and then the next
// one (the probe was sent: the return deadline); applied late, the older
// entry re-armed the submission deadline, whose check.timeout the
// evaluator then dropped as stale, and the return deadline never fired.
// A watch entry older than this replica's own latest write of the key
// changes nothing; the replica's own writes are not decoded again.
func TestTimersWatchEntryDoesNotUndoANewerWrite(t *testing.T) {
	clock := clockwork.NewFakeClock()
	tm := newTimers(clock, nil, nil, slog.New(slog.DiscardHandler), nil)
	tm.own(allPartitions())
	key, part := attemptKey("acme", "t1"), events.PartitionOf("acme")
	submission, ret := clock.Now().Add(25*time.Second), clock.Now().Add(21*time.Second)
	subEv := events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineSubmission, DueAt: submission}
	retEv := events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineReturn, DueAt: ret}

	if !tm.watchWants(key, 10) {
		t.Fatal("the watch skipped a revision this replica has not claimed")
	}
	// While the watch decodes revision 10, the handlers write 10 and 12.
	tm.wrote(key, part, 10, submission, subEv, true)
	tm.wrote(key, part, 12, ret, retEv, true)
	tm.applyWatched(key, part, 10, submission, subEv, true)
	if tm.watchWants(key, 12) {
		t.Error("the watch decodes this replica's own latest write")
	}
	armed := func() events.CheckTimeout {
		t.Helper()
		tm.mu.Lock()
		defer tm.mu.Unlock()
		e, ok := tm.entries[key]
		if !ok {
			t.Fatal("no timer armed")
		}
		return e.ev.(events.CheckTimeout)
	}
	if ev := armed(); ev.Deadline != events.DeadlineReturn || !ev.DueAt.Equal(ret) {
		t.Fatalf("armed %s at %s, want the return deadline at %s", ev.Deadline, ev.DueAt, ret)
	}

	// Another replica's newer write, delivered by the watch, still counts;
	// this replica's write of a revision the watch delivered already does
	// not undo it.
	later := ret.Add(time.Minute)
	if !tm.watchWants(key, 14) {
		t.Fatal("the watch skipped another replica's newer write")
	}
	tm.applyWatched(key, part, 14, later, events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineReturn, DueAt: later}, true)
	tm.wrote(key, part, 13, ret, retEv, true)
	if ev := armed(); !ev.DueAt.Equal(later) {
		t.Errorf("armed at %s, want another replica's newer deadline %s", ev.DueAt, later)
	}
}

// failingPublisher fails its first Publish after running during (a
// handler's write while the publish is out), and records the rest.
type failingPublisher struct {
	during    func()
	failed    bool
	published []events.Event
}

func (p *failingPublisher) Publish(_ context.Context, ev events.Event) (bool, error) {
	if !p.failed {
		p.failed = true
		p.during()
		return false, errors.New("nats: timeout")
	}
	p.published = append(p.published, ev)
	return false, nil
}

// TestTimersFailedPublishKeepsANewerDeadline: a deadline's check.timeout
// whose publish fails is tried again a second later, but when the attempt
// got a newer deadline while the publish was out (the probe was sent: the
// return deadline), the retry does not take that timer's place: the newer
// deadline stays armed and fires, and the stale event, which the
// evaluator would drop, is not published.
func TestTimersFailedPublishKeepsANewerDeadline(t *testing.T) {
	clock := clockwork.NewFakeClock()
	key, part := attemptKey("acme", "t1"), events.PartitionOf("acme")
	submission, ret := clock.Now().Add(time.Second), clock.Now().Add(21*time.Second)
	subEv := events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineSubmission, DueAt: submission}
	retEv := events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineReturn, DueAt: ret}
	pub := &failingPublisher{}
	tm := newTimers(clock, pub, nil, slog.New(slog.DiscardHandler), nil)
	tm.own(allPartitions())
	pub.during = func() { tm.wrote(key, part, 12, ret, retEv, true) }

	tm.arm(key, part, submission, subEv)
	clock.Advance(time.Second)
	tm.fireDue(context.Background())
	if due, ok := tm.next(); !ok || !due.Equal(ret) {
		t.Fatalf("next timer at %v (armed %v), want the return deadline at %v", due, ok, ret)
	}
	clock.Advance(20 * time.Second)
	tm.fireDue(context.Background())
	if len(pub.published) != 1 {
		t.Fatalf("published %d events, want the return deadline's only", len(pub.published))
	}
	if got := pub.published[0].(events.CheckTimeout); got.Deadline != events.DeadlineReturn || !got.DueAt.Equal(ret) {
		t.Errorf("published %s at %s, want the return deadline at %s", got.Deadline, got.DueAt, ret)
	}
}

func allPartitions() []bool {
	owned := make([]bool, events.Partitions)
	for p := range owned {
		owned[p] = true
	}
	return owned
}

func onlyPartitions(ps ...int) []bool {
	owned := make([]bool, events.Partitions)
	for _, p := range ps {
		owned[p] = true
	}
	return owned
}

// checkIn returns a check id whose events are in partition p.
func checkIn(p int) string {
	for i := 0; ; i++ {
		if id := "check-" + strconv.Itoa(i); events.PartitionOf(id) == p {
			return id
		}
	}
}

func TestKeyPartition(t *testing.T) {
	a, b := checkIn(3), checkIn(12)
	for _, c := range []struct {
		key  string
		part int
		ok   bool
	}{
		{attemptKey(a, "t1"), 3, true},
		{retestKey(b, &plannedTest{OriginTestID: "t1", Site: "eu", Attempt: 2}), 12, true},
		{legacyAttemptKey("t1"), 0, false},
		{"retest.t1.eu.2", 0, false},
		{"site.acme.eu", 0, false},
		{"attempt.16.t1", 0, false},
		{"attempt.03.t1", 0, false},
		{"attempt.x.t1", 0, false},
	} {
		p, ok := keyPartition(c.key)
		if p != c.part || ok != c.ok {
			t.Errorf("keyPartition(%q) = %d, %v; want %d, %v", c.key, p, ok, c.part, c.ok)
		}
	}
}

// TestTimersArmOwnPartitionsOnly: a replica arms the timers of the
// partitions it owns, from its own writes and from the watch; a write of
// another partition (handled here while its owner was busy) is left to
// its owner; giving a partition away disarms its timers.
func TestTimersArmOwnPartitionsOnly(t *testing.T) {
	clock := clockwork.NewFakeClock()
	tm := newTimers(clock, nil, nil, slog.New(slog.DiscardHandler), nil)
	a, b := checkIn(3), checkIn(12)
	tm.own(onlyPartitions(3))
	due := clock.Now().Add(time.Minute)
	ev := events.CheckTimeout{TestID: "t", Deadline: events.DeadlineReturn, DueAt: due}

	tm.wrote(attemptKey(a, "ta"), 3, 10, due, ev, true)
	tm.wrote(attemptKey(b, "tb"), 12, 11, due, ev, true)
	tm.applyWatched(attemptKey(b, "tb2"), 12, 12, due, ev, true)
	tm.arm(retestKey(b, &plannedTest{OriginTestID: "tb", Site: "eu", Attempt: 2}), 12, due, ev)
	if got := armedKeys(tm); !slices.Equal(got, []string{attemptKey(a, "ta")}) {
		t.Fatalf("armed %v, want partition 3's only", got)
	}
	if len(tm.written) != 1 {
		t.Errorf("remembers %d own writes, want 1 (none of another partition's, which its watch never returns)", len(tm.written))
	}

	tm.own(onlyPartitions(12))
	if got := armedKeys(tm); len(got) != 0 || len(tm.written) != 0 {
		t.Errorf("after giving partition 3 away: armed %v, %d own writes remembered; want none", got, len(tm.written))
	}
}

func armedKeys(tm *timers) []string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return slices.Sorted(maps.Keys(tm.entries))
}

// owners is a platform.Preference whose partitions a test sets.
type owners struct {
	mu      sync.Mutex
	owned   []bool
	changed chan struct{}
	ready   chan struct{}
}

func newOwners(owned []bool) *owners {
	o := &owners{owned: owned, changed: make(chan struct{}), ready: make(chan struct{})}
	close(o.ready)
	return o
}

func (o *owners) Preferred(p int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owned[p]
}

func (o *owners) Changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changed
}

func (o *owners) Ready() <-chan struct{} { return o.ready }

func (o *owners) set(owned []bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owned = owned
	close(o.changed)
	o.changed = make(chan struct{})
}

// TestTimersWatchFollowsOwnedPartitions runs the timers' KV watch on a
// real NATS server: a replica that owns partition 3 arms the pending
// records of partition 3 and none of partition 12, including records
// written while it runs; when it is given partition 12 (its owner is
// gone) it arms every record of 12 pending then, among them one written
// before keys named the partition (legacyAttemptKey); when it gives
// partition 3 away, 3's timers are disarmed.
func TestTimersWatchFollowsOwnedPartitions(t *testing.T) {
	ctx, kv := evaluatorBucket(t)
	clock := clockwork.NewFakeClock()
	a, b := checkIn(3), checkIn(12)
	pending := func(check, test string) []byte {
		data, err := json.Marshal(Attempt{TestID: test, CheckID: check, Site: "eu", Kind: events.KindRoundTrip, Attempt: 1,
			Deadline: clock.Now().Add(time.Minute), DeadlineKind: events.DeadlineReturn})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	retest, err := json.Marshal(RetestRecord{DueAt: clock.Now().Add(time.Minute), Test: events.TestScheduled{TestID: "r1", CheckID: a}})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
	}
	retestA := retestKey(a, &plannedTest{OriginTestID: "a1", Site: "eu", Attempt: 2})
	put(attemptKey(a, "a1"), pending(a, "a1"))
	put(retestA, retest)
	put(attemptKey(b, "b1"), pending(b, "b1"))
	put(legacyAttemptKey("b0"), pending(b, "b0"))
	put(legacyAttemptKey("a0"), pending(a, "a0"))

	own := newOwners(onlyPartitions(3))
	tm := watchingTimers(t, ctx, clock, kv, own)
	want := []string{legacyAttemptKey("a0"), attemptKey(a, "a1"), retestA}
	slices.Sort(want)
	if got := armedKeys(tm); !slices.Equal(got, want) {
		t.Fatalf("armed %v at start, want partition 3's %v", got, want)
	}

	// Written while it runs: partition 12's record is not delivered; the
	// later one of partition 3 is, which shows the watch went past it.
	put(attemptKey(b, "b2"), pending(b, "b2"))
	put(attemptKey(a, "a2"), pending(a, "a2"))
	waitArmed(t, tm, attemptKey(a, "a2"))
	if got := armedKeys(tm); slices.Contains(got, attemptKey(b, "b2")) {
		t.Fatalf("armed %v: a record of partition 12, which this replica does not own", got)
	}
	tm.mu.Lock()
	received := tm.received
	tm.mu.Unlock()
	if received != 5 {
		t.Errorf("the watch delivered %d records, want 5: partition 3's 3 and the 2 without a partition in their key", received)
	}

	own.set(onlyPartitions(3, 12))
	for _, k := range []string{attemptKey(b, "b1"), attemptKey(b, "b2"), legacyAttemptKey("b0")} {
		waitArmed(t, tm, k)
	}

	own.set(onlyPartitions(12))
	testkit.WaitFor(t, "partition 3's timers disarmed", func() bool { return !slices.Contains(armedKeys(tm), attemptKey(a, "a1")) })
	want = []string{legacyAttemptKey("b0"), attemptKey(b, "b1"), attemptKey(b, "b2")}
	slices.Sort(want)
	testkit.WaitFor(t, "partition 12's timers only", func() bool { return slices.Equal(armedKeys(tm), want) })
}

// TestTimersWatchDoesNotDecodeAWriteInFlight: the watch can deliver this
// replica's own write before the writer learns its revision (in-process,
// it mostly does). An entry with exactly the bytes of a write in flight
// arms the timer the writer computed, without decoding the record again;
// any other entry (another replica's write of the key) is decoded.
func TestTimersWatchDoesNotDecodeAWriteInFlight(t *testing.T) {
	ctx, kv := evaluatorBucket(t)
	clock := clockwork.NewFakeClock()
	tm := watchingTimers(t, ctx, clock, kv, newOwners(allPartitions()))

	check := checkIn(5)
	key := attemptKey(check, "t1")
	record := func(due time.Time) (*Attempt, []byte) {
		a := &Attempt{TestID: "t1", CheckID: check, Site: "eu", Kind: events.KindRoundTrip, Attempt: 1,
			Deadline: due, DeadlineKind: events.DeadlineReturn}
		data, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return a, data
	}
	armedAt := func(want time.Time) {
		t.Helper()
		testkit.WaitFor(t, "timer armed at "+want.String(), func() bool {
			tm.mu.Lock()
			defer tm.mu.Unlock()
			e, ok := tm.entries[key]
			return ok && e.due.Equal(want)
		})
	}
	decoded := tm.decoded.Load

	own, ownData := record(clock.Now().Add(time.Minute))
	w := &inFlightWrite{data: ownData, part: events.PartitionOf(check)}
	w.due, w.ev, w.armed = own.timer()
	tm.writing(key, w)

	// Another replica writes the key first: decoded.
	_, other := record(clock.Now().Add(2 * time.Minute))
	if _, err := kv.Put(ctx, key, other); err != nil {
		t.Fatal(err)
	}
	armedAt(clock.Now().Add(2 * time.Minute))
	if n := decoded(); n != 1 {
		t.Fatalf("decoded %d records, want 1: another replica's write", n)
	}
	// This replica's write lands before its writer hears back: armed from
	// the writer's timer, not decoded.
	if _, err := kv.Put(ctx, key, ownData); err != nil {
		t.Fatal(err)
	}
	armedAt(clock.Now().Add(time.Minute))
	if n := decoded(); n != 1 {
		t.Errorf("decoded %d records, want 1: this replica's own write in flight was decoded again", n)
	}
	tm.writeDone(key, w)

	// Once the write is done, the same bytes are decoded like any other
	// entry (a write that failed for its writer and landed anyway, seen
	// late).
	if _, err := kv.Put(ctx, key, ownData); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the entry decoded", func() bool { return decoded() == 2 })
}

// evaluatorBucket returns the evaluator's KV bucket on a NATS server of
// the test's own, and the test's context.
func evaluatorBucket(t *testing.T) (context.Context, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx := natstest.Context(t)
	kv, err := js.KeyValue(ctx, events.BucketEvaluator)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, kv
}

// watchingTimers returns timers whose watch of kv runs, for the owners
// own, until the test ends, once the watch has delivered the state at
// its start.
func watchingTimers(t *testing.T, ctx context.Context, clock clockwork.Clock, kv jetstream.KeyValue, own platform.Preference) *timers {
	t.Helper()
	tm := newTimers(clock, nil, kv, slog.New(slog.DiscardHandler), nil)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tm.watch(wctx, own) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})
	select {
	case <-tm.ready:
	case <-ctx.Done():
		t.Fatal("the watch never delivered the state at start")
	}
	return tm
}

func waitArmed(t *testing.T, tm *timers, key string) {
	t.Helper()
	testkit.WaitFor(t, key+" armed", func() bool { return slices.Contains(armedKeys(tm), key) })
}

// TestTimerGauges: scout_evaluator_partitions_owned and
// scout_evaluator_timers_armed read this replica's timers when scraped (0
// before Run has made them); a timer of a partition it does not own is not
// armed, so not counted.
func TestTimerGauges(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	f, err := checks.Parse("t.yaml", []byte("sites: [a]\nchecks:\n  - id: x\n    customer: acme\n    kind: roundtrip\n    target: p@acme.example\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e, err := New(Config{}, Deps{Checks: checks.NewLive(f), JS: js, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if owned := testkit.MustMetric(t, reg, "scout_evaluator_partitions_owned", nil); owned != 0 {
		t.Errorf("partitions owned before Run: %v, want 0", owned)
	}
	clock := clockwork.NewFakeClock()
	tm := newTimers(clock, nil, nil, slog.New(slog.DiscardHandler), nil)
	tm.own(onlyPartitions(3, 5))
	due := clock.Now().Add(time.Minute)
	tm.arm(attemptKey(checkIn(3), "t1"), 3, due, events.CheckTimeout{TestID: "t1"})
	tm.arm(attemptKey(checkIn(12), "t2"), 12, due, events.CheckTimeout{TestID: "t2"})
	e.mu.Lock()
	e.timers = tm
	e.mu.Unlock()
	if owned, armed := testkit.MustMetric(t, reg, "scout_evaluator_partitions_owned", nil), testkit.MustMetric(t, reg, "scout_evaluator_timers_armed", nil); owned != 2 || armed != 1 {
		t.Errorf("partitions owned %v, timers armed %v; want 2 and 1", owned, armed)
	}
}
