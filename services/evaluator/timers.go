package evaluator

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
)

// Timer records live in the evaluator bucket, so that a restarted or
// replacement evaluator, or another replica, re-arms every deadline:
//
//	attempt.<partition>.<test id>   an attempt; while not done, its
//	                                Deadline is a timer that publishes
//	                                check.timeout
//	retest.<partition>.<origin>.<site>.<attempt>
//	                                a confirmation test to publish at
//	                                DueAt (deleted once published)
//
// <partition> is the check's (events.PartitionOf), so that a replica
// follows the records of its own partitions only. Records written before
// the keys carried it (attempt.<test id>, retest.<origin>.<site>.<attempt>)
// are still followed and read until they expire (legacyAttemptKey).
//
// Beside them, replica.<id> is each live replica's heartbeat
// (platform.Members).
const (
	prefixAttempt = "attempt."
	prefixRetest  = "retest."
	prefixReplica = "replica."
)

// keyPartition returns the partition named in an attempt or retest key,
// and false for a key of the form without one (written before keys
// carried it) or any other key.
func keyPartition(key string) (int, bool) {
	var rest string
	switch {
	case strings.HasPrefix(key, prefixAttempt) && strings.Count(key, ".") == 2:
		rest = key[len(prefixAttempt):]
	case strings.HasPrefix(key, prefixRetest) && strings.Count(key, ".") == 4:
		rest = key[len(prefixRetest):]
	default:
		return 0, false
	}
	tok, _, _ := strings.Cut(rest, ".")
	return events.ParsePartition(tok)
}

// watchFilters returns the KV watch filters of the attempt and retest
// records of the partitions owned (owned[p]), and of the records without
// a partition in their key, whose partition the watch learns from their
// value.
func watchFilters(owned []bool) []string {
	if !slices.Contains(owned, false) {
		return []string{prefixAttempt + ">", prefixRetest + ">"}
	}
	filters := []string{prefixAttempt + "*", prefixRetest + "*.*.*"}
	for p, mine := range owned {
		if mine {
			filters = append(filters, prefixAttempt+strconv.Itoa(p)+".*", prefixRetest+strconv.Itoa(p)+".*.*.*")
		}
	}
	return filters
}

// RetestRecord is a scheduled confirmation (KV key
// retest.<partition>.<origin>.<site>.<attempt>, retestKey).
type RetestRecord struct {
	DueAt time.Time            `json:"due_at"`
	Test  events.TestScheduled `json:"test"`
}

// timers fires persisted deadlines on the injected clock. Every replica runs
// one for the partitions it owns (platform.Members): it learns their timers
// from its own handlers (wrote) and from a KV watch filtered to them
// (writes by any replica, and everything pending when the watch starts).
// When the owners change, the watch starts again on the new partitions,
// and the timers of the partitions that went elsewhere are disarmed: a
// replica decodes the attempt writes of its own partitions only, not every
// replica's (docs/capacity.md, "Partitioned evaluators"). A timer that
// fires twice (two replicas that both took a partition for theirs for a
// moment) publishes the same message id, which JetStream stores once.
type timers struct {
	clock clockwork.Clock
	pub   platform.Publisher
	kv    jetstream.KeyValue
	log   *slog.Logger
	fired func(kind string)

	mu      sync.Mutex
	entries map[string]*timerEntry
	// owned[p]: partition p is this replica's; only its timers are armed.
	owned []bool
	// written holds the revision of this replica's own latest write of a
	// key, whose timer it armed itself: the watch skips that revision and
	// older ones of the key (it does not decode them, and an older one
	// must not undo the newer arm), and removes the entry when it reaches
	// that revision.
	written map[string]ownWrite
	// inFlight holds this replica's writes in flight (sent, their revision
	// not known yet). A watch entry can arrive before its writer learns
	// the revision; one that is exactly such a write's bytes arms the
	// timer the writer computed from the same record instead of decoding
	// it again.
	inFlight map[string]*inFlightWrite
	// watched is the highest revision the current watch has delivered (KV
	// revisions are the bucket's stream sequences, one order for every
	// key): a write at or below it of an owned partition was armed by the
	// watch already. A new watch starts it again from 0.
	watched uint64
	// received counts the entries the watches delivered.
	received  uint64
	queue     timerHeap
	wake      chan struct{}
	ready     chan struct{} // closed when the first watch delivered the state at start
	readyOnce sync.Once
	// decoded counts the watch entries decoded (outside mu: apply holds
	// no lock while it decodes).
	decoded atomic.Uint64
}

type ownWrite struct {
	rev  uint64
	part int
}

// inFlightWrite is an attempt record being written by this replica: its
// JSON and the timer it sets (Attempt.timer), in partition part.
type inFlightWrite struct {
	data  []byte
	part  int
	due   time.Time
	ev    events.Event
	armed bool
}

type timerEntry struct {
	key   string
	part  int
	due   time.Time
	ev    events.Event
	index int
}

func newTimers(clock clockwork.Clock, pub platform.Publisher, kv jetstream.KeyValue, log *slog.Logger, fired func(string)) *timers {
	return &timers{
		clock: clock, pub: pub, kv: kv, log: log, fired: fired, owned: make([]bool, events.Partitions),
		entries: map[string]*timerEntry{}, written: map[string]ownWrite{}, inFlight: map[string]*inFlightWrite{}, wake: make(chan struct{}, 1), ready: make(chan struct{}),
	}
}

// own makes owned (owned[p]: partition p) this replica's partitions: the
// timers of the others are disarmed and forgotten, and the revision the
// watch delivered starts again from 0 for the watch that follows.
func (t *timers) own(owned []bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	copy(t.owned, owned)
	for key, e := range t.entries {
		if !t.owned[e.part] {
			t.disarmLocked(key)
		}
	}
	for key, w := range t.written {
		if !t.owned[w.part] {
			delete(t.written, key)
		}
	}
	t.watched = 0
}

// ownedCount returns the number of partitions this replica owns.
func (t *timers) ownedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, mine := range t.owned {
		if mine {
			n++
		}
	}
	return n
}

// owns reports whether partition p is this replica's.
func (t *timers) owns(p int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.owned[p]
}

// arm sets (or moves) the timer key of partition part to publish ev at
// due, when part is this replica's (the owner's watch arms it otherwise).
func (t *timers) arm(key string, part int, due time.Time, ev events.Event) {
	t.mu.Lock()
	if t.owned[part] {
		t.armLocked(key, part, due, ev)
	}
	t.mu.Unlock()
	t.poke()
}

// armLocked is arm with t.mu held, whoever owns part.
func (t *timers) armLocked(key string, part int, due time.Time, ev events.Event) {
	if e, ok := t.entries[key]; ok {
		e.due, e.ev, e.part = due, ev, part
		heap.Fix(&t.queue, e.index)
	} else {
		e := &timerEntry{key: key, part: part, due: due, ev: ev}
		t.entries[key] = e
		heap.Push(&t.queue, e)
	}
}

// wrote arms (armed) or disarms the timer of key, in partition part, which
// this replica has just written at rev, unless the watch delivered rev
// already (it armed that revision, or a newer one, itself) or part is not
// this replica's (its owner's watch delivers the write). Arming and
// recording the revision happen under one lock, so that a watch entry
// decoded meanwhile cannot undo them (applyWatched).
func (t *timers) wrote(key string, part int, rev uint64, due time.Time, ev events.Event, armed bool) {
	t.mu.Lock()
	if rev <= t.watched || !t.owned[part] {
		t.mu.Unlock()
		return
	}
	t.written[key] = ownWrite{rev: rev, part: part}
	t.setLocked(key, part, due, ev, armed)
	t.mu.Unlock()
	t.poke()
}

// writing records w, about to be written at key, as in flight until
// writeDone(key, w), whatever the write's outcome: a watch entry of key
// with w's bytes then arms w's timer without decoding them (apply).
func (t *timers) writing(key string, w *inFlightWrite) {
	t.mu.Lock()
	t.inFlight[key] = w
	t.mu.Unlock()
}

// writeDone ends writing(key, w), unless another write of key took its
// place meanwhile.
func (t *timers) writeDone(key string, w *inFlightWrite) {
	t.mu.Lock()
	if t.inFlight[key] == w {
		delete(t.inFlight, key)
	}
	t.mu.Unlock()
}

// inFlightAs returns the write of key in flight whose bytes are value.
func (t *timers) inFlightAs(key string, value []byte) (*inFlightWrite, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.inFlight[key]
	if !ok || !bytes.Equal(w.data, value) {
		return nil, false
	}
	return w, true
}

// watchWants reports whether the watch entry of key at rev is to be
// decoded: it is not this replica's own latest write or an older one.
func (t *timers) watchWants(key string, rev uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.watched = max(t.watched, rev)
	t.received++
	own, ok := t.written[key]
	if !ok {
		return true
	}
	if rev >= own.rev {
		delete(t.written, key)
	}
	return rev > own.rev
}

// applyWatched arms (armed) or disarms the timer of key, in partition
// part, as its watch entry at rev says, unless this replica wrote a newer
// revision of key while the entry was being decoded, or part is not this
// replica's (a record without a partition in its key, which the watch
// follows in every replica). Disarming needs no partition (part < 0).
func (t *timers) applyWatched(key string, part int, rev uint64, due time.Time, ev events.Event, armed bool) {
	t.mu.Lock()
	if own, ok := t.written[key]; ok && own.rev > rev || armed && !t.owned[part] {
		t.mu.Unlock()
		return
	}
	t.setLocked(key, part, due, ev, armed)
	t.mu.Unlock()
	t.poke()
}

// setLocked arms the timer of key at due (armed) or disarms it, with t.mu
// held.
func (t *timers) setLocked(key string, part int, due time.Time, ev events.Event, armed bool) {
	if armed {
		t.armLocked(key, part, due, ev)
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
	if _, ok := t.entries[e.key]; !ok && t.owned[e.part] {
		t.armLocked(e.key, e.part, due, e.ev)
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

// watch follows the attempt and retest records of the partitions this
// replica owns (owners: platform.Members), once owners has its first view,
// and arms or disarms their timers. When the owners change it disarms the
// timers of the partitions that went elsewhere and watches the new set:
// the watch's first values re-arm everything pending in them. It closes
// t.ready once the first watch has delivered the state at its start, and
// returns nil when ctx ends, an error when a watch cannot start or ends.
func (t *timers) watch(ctx context.Context, owners platform.Preference) error {
	select {
	case <-owners.Ready():
	case <-ctx.Done():
		return nil
	}
	owned := make([]bool, len(t.owned))
	for {
		changed := owners.Changed()
		mine := 0
		for p := range owned {
			owned[p] = owners.Preferred(p)
			if owned[p] {
				mine++
			}
		}
		t.own(owned)
		w, err := t.kv.WatchFiltered(ctx, watchFilters(owned))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.log.Info("following the timers of this replica's partitions", "partitions", mine, "of", len(owned))
		again, err := t.follow(ctx, w, changed)
		_ = w.Stop()
		if !again {
			return err
		}
	}
}

// follow applies w's entries until ctx ends (false, nil), changed closes
// (true) or w ends (false and an error).
func (t *timers) follow(ctx context.Context, w jetstream.KeyWatcher, changed <-chan struct{}) (again bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-changed:
			return true, nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return false, nil
				}
				return false, errors.New("kv watch closed")
			}
			if e == nil {
				t.readyOnce.Do(func() { close(t.ready) })
				continue
			}
			t.apply(e)
		}
	}
}

// apply arms or disarms the timer of one watch entry. A record without a
// partition in its key is decoded first (its check names the partition).
func (t *timers) apply(e jetstream.KeyValueEntry) {
	key, rev := e.Key(), e.Revision()
	if !t.watchWants(key, rev) {
		return // armed or disarmed already when this replica wrote it
	}
	if e.Operation() != jetstream.KeyValuePut {
		t.applyWatched(key, -1, rev, time.Time{}, nil, false)
		return
	}
	if w, ok := t.inFlightAs(key, e.Value()); ok {
		// This replica's own write, before its writer learnt the
		// revision: the same record, so the same timer.
		t.applyWatched(key, w.part, rev, w.due, w.ev, w.armed)
		return
	}
	part, inKey := keyPartition(key)
	if inKey && !t.owns(part) {
		return // a write of a partition this replica gave away meanwhile
	}
	t.decoded.Add(1)
	var (
		check string
		due   time.Time
		ev    events.Event
		armed bool
	)
	switch {
	case strings.HasPrefix(key, prefixAttempt):
		var a Attempt
		if err := json.Unmarshal(e.Value(), &a); err != nil {
			t.log.Warn("undecodable attempt record", "key", key, "error", err)
			return
		}
		check = a.CheckID
		due, ev, armed = a.timer()
	case strings.HasPrefix(key, prefixRetest):
		var r RetestRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			t.log.Warn("undecodable retest record", "key", key, "error", err)
			return
		}
		check = r.Test.CheckID
		due, ev, armed = r.DueAt, r.Test, true
	default:
		return
	}
	if !inKey {
		part = events.PartitionOf(check) // a record of the last release
	}
	t.applyWatched(key, part, rev, due, ev, armed)
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
