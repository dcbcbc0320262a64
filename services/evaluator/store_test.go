package evaluator

import (
	"strconv"
	"testing"
	"time"
)

// TestStoreCacheDropsExpired: entries older than the cache's lifetime are
// never read again, so they do not stay in memory until the cache is full.
// The store's clock is the test's: the race detector may make a thousand
// writes take longer than a real lifetime.
func TestStoreCacheDropsExpired(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	s := newStore(nil)
	s.now = func() time.Time { return now }
	s.ttl = 20 * time.Millisecond
	for i := 0; i < 1000; i++ {
		s.remember("attempt."+strconv.Itoa(i), cached{rev: 1, data: []byte(`{}`), at: now})
		now = now.Add(10 * time.Microsecond) // 10 ms in all: within the lifetime
	}
	if n := len(s.cache); n != 1000 {
		t.Fatalf("%d entries cached, want 1000", n)
	}
	now = now.Add(3 * s.ttl)
	s.remember("site.a.b", cached{rev: 2, data: []byte(`{}`), at: now})
	if n := len(s.cache); n != 1 {
		t.Fatalf("%d entries cached after the others expired, want 1", n)
	}
	if _, ok := s.cache["site.a.b"]; !ok {
		t.Fatal("the fresh entry is gone")
	}
}
