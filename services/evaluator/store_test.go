package evaluator

import (
	"strconv"
	"testing"
	"time"
)

// TestStoreCacheDropsExpired: entries older than the cache's lifetime are
// never read again, so they do not stay in memory until the cache is full.
func TestStoreCacheDropsExpired(t *testing.T) {
	s := newStore(nil)
	s.ttl = 20 * time.Millisecond
	for i := 0; i < 1000; i++ {
		s.remember("attempt."+strconv.Itoa(i), cached{rev: 1, data: []byte(`{}`), at: time.Now()})
	}
	if n := len(s.cache); n != 1000 {
		t.Fatalf("%d entries cached, want 1000", n)
	}
	time.Sleep(3 * s.ttl)
	s.remember("site.a.b", cached{rev: 2, data: []byte(`{}`), at: time.Now()})
	if n := len(s.cache); n != 1 {
		t.Fatalf("%d entries cached after the others expired, want 1", n)
	}
	if _, ok := s.cache["site.a.b"]; !ok {
		t.Fatal("the fresh entry is gone")
	}
}
