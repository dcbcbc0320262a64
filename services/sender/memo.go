package sender

import (
	"sync"
	"time"
)

// memo remembers, per test id, the outcome of an earlier delivery: for a
// round trip a temporary failure (reported if the retry comes too late) or
// a final mail.sent that was not yet published; for a service check its
// service.checked. Entries expire so that the map stays small; JetStream
// redelivers within minutes.
type memo[T any] struct {
	mu sync.Mutex
	m  map[string]memoEntry[T]
}

type memoEntry[T any] struct {
	ev      T
	final   bool
	expires time.Time
}

func newMemo[T any]() *memo[T] { return &memo[T]{m: map[string]memoEntry[T]{}} }

func (m *memo[T]) get(testID string) (memoEntry[T], bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[testID]
	return e, ok
}

// put records ev for testID until expires, and forgets entries that
// expired before now.
func (m *memo[T]) put(testID string, ev T, final bool, now, expires time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, e := range m.m {
		if e.expires.Before(now) {
			delete(m.m, id)
		}
	}
	m.m[testID] = memoEntry[T]{ev: ev, final: final, expires: expires}
}

func (m *memo[T]) drop(testID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, testID)
}
