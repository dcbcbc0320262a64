package sender

import (
	"sync"
	"time"
)

// memoPruneEvery is how often put forgets expired entries: one pass over
// the map a second instead of one per put, whose cost grew with the tests
// remembered (tens of thousands at a thousand tests/s).
const memoPruneEvery = time.Second

// memo remembers, per test id, the outcome of an earlier delivery: for a
// round trip a temporary failure (reported if the retry comes too late) or
// a final mail.sent that was not yet published; for a service check its
// service.checked. Entries expire so that the map stays small; JetStream
// redelivers within minutes.
type memo[T any] struct {
	mu        sync.Mutex
	m         map[string]memoEntry[T]
	nextPrune time.Time
}

type memoEntry[T any] struct {
	ev      T
	final   bool
	expires time.Time
}

func newMemo[T any]() *memo[T] { return &memo[T]{m: map[string]memoEntry[T]{}} }

// get returns the entry of testID unless it expired before now.
func (m *memo[T]) get(testID string, now time.Time) (memoEntry[T], bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[testID]
	if !ok || e.expires.Before(now) {
		return memoEntry[T]{}, false
	}
	return e, true
}

// put records ev for testID until expires and, at most every
// memoPruneEvery, forgets the entries that expired before now.
func (m *memo[T]) put(testID string, ev T, final bool, now, expires time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !now.Before(m.nextPrune) {
		for id, e := range m.m {
			if e.expires.Before(now) {
				delete(m.m, id)
			}
		}
		m.nextPrune = now.Add(memoPruneEvery)
	}
	m.m[testID] = memoEntry[T]{ev: ev, final: final, expires: expires}
}

func (m *memo[T]) drop(testID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, testID)
}
