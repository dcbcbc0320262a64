package evaluator

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
)

// Timer records live in the evaluator bucket, so that a restarted or
// replacement evaluator, or another replica, re-arms every deadline:
//
//	attempt.<test id>   an attempt; while not done, its Deadline is a timer
//	                    that publishes check.timeout
//	retest.<key>        a confirmation test to publish at DueAt (deleted
//	                    once published)
//
// Beside them, replica.<id> is each live replica's heartbeat
// (platform.Members).
const (
	prefixAttempt = "attempt."
	prefixRetest  = "retest."
	prefixReplica = "replica."
)

// RetestRecord is a scheduled confirmation (KV key retest.<origin>.<site>.<attempt>).
type RetestRecord struct {
	DueAt time.Time            `json:"due_at"`
	Test  events.TestScheduled `json:"test"`
}

// timers fires persisted deadlines on the injected clock. Every replica runs
// one: it learns timers from its own handlers (arm) and from a KV watch
// (writes by any replica, and everything pending at start). A timer that
// fires twice (two replicas) publishes the same message id, which
// JetStream stores once.
type timers struct {
	clock clockwork.Clock
	pub   platform.Publisher
	kv    jetstream.KeyValue
	log   *slog.Logger
	fired func(kind string)

	mu      sync.Mutex
	entries map[string]*timerEntry
	// written holds the revision of this replica's own latest write of a
	// key, whose timer it armed itself: the watch skips that revision and
	// older ones of the key (it does not decode them, and an older one
	// must not undo the newer arm), and removes the entry when it reaches
	// that revision.
	written map[string]uint64
	// watched is the highest revision the watch has delivered (KV
	// revisions are the bucket's stream sequences, one order for every
	// key): a write at or below it was armed by the watch already.
	watched uint64
	queue   timerHeap
	wake    chan struct{}
	ready   chan struct{} // closed when the watch delivered the initial state
}

type timerEntry struct {
	key   string
	due   time.Time
	ev    events.Event
	index int
}

func newTimers(clock clockwork.Clock, pub platform.Publisher, kv jetstream.KeyValue, log *slog.Logger, fired func(string)) *timers {
	return &timers{
		clock: clock, pub: pub, kv: kv, log: log, fired: fired,
		entries: map[string]*timerEntry{}, written: map[string]uint64{}, wake: make(chan struct{}, 1), ready: make(chan struct{}),
	}
}

// arm sets (or moves) the timer key to publish ev at due.
func (t *timers) arm(key string, due time.Time, ev events.Event) {
	t.mu.Lock()
	t.armLocked(key, due, ev)
	t.mu.Unlock()
	t.poke()
}

// armLocked is arm with t.mu held.
func (t *timers) armLocked(key string, due time.Time, ev events.Event) {
	if e, ok := t.entries[key]; ok {
		e.due, e.ev = due, ev
		heap.Fix(&t.queue, e.index)
	} else {
		e := &timerEntry{key: key, due: due, ev: ev}
		t.entries[key] = e
		heap.Push(&t.queue, e)
	}
}

// wrote arms (armed) or disarms the timer of key, which this replica has
// just written at rev, unless the watch delivered rev already (it armed
// that revision, or a newer one, itself). Arming and recording the
// revision happen under one lock, so that a watch entry decoded meanwhile
// cannot undo them (applyWatched).
func (t *timers) wrote(key string, rev uint64, due time.Time, ev events.Event, armed bool) {
	t.mu.Lock()
	if rev <= t.watched {
		t.mu.Unlock()
		return
	}
	t.written[key] = rev
	t.setLocked(key, due, ev, armed)
	t.mu.Unlock()
	t.poke()
}

// watchWants reports whether the watch entry of key at rev is to be
// decoded: it is not this replica's own latest write or an older one.
func (t *timers) watchWants(key string, rev uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.watched = max(t.watched, rev)
	own, ok := t.written[key]
	if !ok {
		return true
	}
	if rev >= own {
		delete(t.written, key)
	}
	return rev > own
}

// applyWatched arms (armed) or disarms the timer of key as its watch
// entry at rev says, unless this replica wrote a newer revision of key
// while the entry was being decoded.
func (t *timers) applyWatched(key string, rev uint64, due time.Time, ev events.Event, armed bool) {
	t.mu.Lock()
	if own, ok := t.written[key]; ok && own > rev {
		t.mu.Unlock()
		return
	}
	t.setLocked(key, due, ev, armed)
	t.mu.Unlock()
	t.poke()
}

// setLocked arms the timer of key at due (armed) or disarms it, with t.mu
// held.
func (t *timers) setLocked(key string, due time.Time, ev events.Event, armed bool) {
	if armed {
		t.armLocked(key, due, ev)
	} else {
		t.disarmLocked(key)
	}
}

// disarmLocked removes the timer key, if armed; t.mu is held.
func (t *timers) disarmLocked(key string) {
	if e, ok := t.entries[key]; ok {
		heap.Remove(&t.queue, e.index)
		delete(t.entries, key)
	}
}

// retry arms the timer e again at due after its publish failed, unless
// the key was armed anew meanwhile (a newer deadline of the attempt,
// written while the publish was out): that one stands, and e's event,
// stale now, is not published.
func (t *timers) retry(e *timerEntry, due time.Time) {
	t.mu.Lock()
	if _, ok := t.entries[e.key]; !ok {
		t.armLocked(e.key, due, e.ev)
	}
	t.mu.Unlock()
	t.poke()
}

func (t *timers) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// pending returns the number of armed timers.
func (t *timers) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// next returns the earliest armed due time.
func (t *timers) next() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) == 0 {
		return time.Time{}, false
	}
	return t.queue[0].due, true
}

// run fires timers until ctx ends. It always waits on one clock timer (an
// hour when nothing is armed), which keeps fake-clock tests deterministic.
func (t *timers) run(ctx context.Context) error {
	for {
		t.mu.Lock()
		wait := time.Hour
		if len(t.queue) > 0 {
			wait = max(t.clock.Until(t.queue[0].due), 0)
		}
		t.mu.Unlock()
		timer := t.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-t.wake:
			timer.Stop()
			continue
		case <-timer.Chan():
		}
		t.fireDue(ctx)
	}
}

func (t *timers) fireDue(ctx context.Context) {
	now := t.clock.Now()
	for {
		t.mu.Lock()
		if len(t.queue) == 0 || t.queue[0].due.After(now) {
			t.mu.Unlock()
			return
		}
		e := heap.Pop(&t.queue).(*timerEntry)
		delete(t.entries, e.key)
		t.mu.Unlock()

		ev := e.ev
		if to, ok := ev.(events.CheckTimeout); ok {
			to.FiredAt = now
			ev = to
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := t.pub.Publish(pctx, ev)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.log.Warn("timer publish failed, retrying in 1s", "key", e.key, "error", err)
			t.retry(e, now.Add(time.Second))
			continue
		}
		kind := "deadline"
		if strings.HasPrefix(e.key, prefixRetest) {
			kind = "retest"
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := t.kv.Delete(dctx, e.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.log.Warn("retest record not deleted; it is published again at restart (de-duplicated)", "key", e.key, "error", err)
			}
			cancel()
		}
		if t.fired != nil {
			t.fired(kind)
		}
	}
}

// watch follows the attempt and retest records of every replica and arms
// or disarms their timers. It closes t.ready once the state at start has
// been read.
func (t *timers) watch(ctx context.Context) error {
	w, err := t.kv.WatchFiltered(ctx, []string{prefixAttempt + ">", prefixRetest + ">"})
	if err != nil {
		return err
	}
	defer w.Stop()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("kv watch closed")
			}
			if e == nil {
				if initial {
					initial = false
					close(t.ready)
				}
				continue
			}
			t.apply(e)
		}
	}
}

func (t *timers) apply(e jetstream.KeyValueEntry) {
	key, rev := e.Key(), e.Revision()
	if !t.watchWants(key, rev) {
		return // armed or disarmed already when this replica wrote it
	}
	if e.Operation() != jetstream.KeyValuePut {
		t.applyWatched(key, rev, time.Time{}, nil, false)
		return
	}
	switch {
	case strings.HasPrefix(key, prefixAttempt):
		var a Attempt
		if err := json.Unmarshal(e.Value(), &a); err != nil {
			t.log.Warn("undecodable attempt record", "key", key, "error", err)
			return
		}
		due, ev, ok := a.timer()
		t.applyWatched(key, rev, due, ev, ok)
	case strings.HasPrefix(key, prefixRetest):
		var r RetestRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			t.log.Warn("undecodable retest record", "key", key, "error", err)
			return
		}
		t.applyWatched(key, rev, r.DueAt, r.Test, true)
	}
}

type timerHeap []*timerEntry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].key < h[j].key
	}
	return h[i].due.Before(h[j].due)
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *timerHeap) Push(x any)   { e := x.(*timerEntry); e.index = len(*h); *h = append(*h, e) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
