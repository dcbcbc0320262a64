package evaluator

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
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
	key := attemptKey("t1")
	submission, ret := clock.Now().Add(25*time.Second), clock.Now().Add(21*time.Second)
	subEv := events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineSubmission, DueAt: submission}
	retEv := events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineReturn, DueAt: ret}

	if !tm.watchWants(key, 10) {
		t.Fatal("the watch skipped a revision this replica has not claimed")
	}
	// While the watch decodes revision 10, the handlers write 10 and 12.
	tm.wrote(key, 10, submission, subEv, true)
	tm.wrote(key, 12, ret, retEv, true)
	tm.applyWatched(key, 10, submission, subEv, true)
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
	tm.applyWatched(key, 14, later, events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineReturn, DueAt: later}, true)
	tm.wrote(key, 13, ret, retEv, true)
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
	key := attemptKey("t1")
	submission, ret := clock.Now().Add(time.Second), clock.Now().Add(21*time.Second)
	subEv := events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineSubmission, DueAt: submission}
	retEv := events.CheckTimeout{TestID: "t1", Deadline: events.DeadlineReturn, DueAt: ret}
	pub := &failingPublisher{}
	tm := newTimers(clock, pub, nil, slog.New(slog.DiscardHandler), nil)
	pub.during = func() { tm.wrote(key, 12, ret, retEv, true) }

	tm.arm(key, submission, subEv)
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
