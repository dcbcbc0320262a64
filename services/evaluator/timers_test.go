package evaluator

import (
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
