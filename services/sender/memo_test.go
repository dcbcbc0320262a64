package sender

import (
	"strconv"
	"testing"
	"time"
)

// TestMemoExpiry: an entry is returned until it expires and not after,
// whether or not a prune has run; put forgets expired entries at most
// every memoPruneEvery.
func TestMemoExpiry(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m := newMemo[int]()
	m.put("a", 1, false, t0, t0.Add(2*time.Second))
	m.put("b", 2, true, t0, t0.Add(10*time.Second))
	if e, ok := m.get("a", t0.Add(2*time.Second)); !ok || e.ev != 1 {
		t.Fatalf("a at its expiry: %v, %v; want 1", e, ok)
	}
	if _, ok := m.get("a", t0.Add(2*time.Second+time.Millisecond)); ok {
		t.Error("a after its expiry: still returned")
	}
	// Within a second of the last prune: nothing is pruned, however many
	// puts come.
	m.put("c", 3, false, t0.Add(500*time.Millisecond), t0.Add(time.Minute))
	if len(m.m) != 3 {
		t.Errorf("%d entries, want 3", len(m.m))
	}
	m.put("d", 4, false, t0.Add(3*time.Second), t0.Add(time.Minute))
	if _, ok := m.m["a"]; ok || len(m.m) != 3 {
		t.Errorf("after a prune: %d entries, a kept %v; want b, c and d", len(m.m), ok)
	}
	if e, ok := m.get("b", t0.Add(3*time.Second)); !ok || !e.final || e.ev != 2 {
		t.Errorf("b: %v, %v", e, ok)
	}
}

// BenchmarkMemoPut: one put with 100,000 tests remembered (a sender at
// about 1,000 tests/s with a 90 s memory), the clock advancing 1 ms a put.
// It scanned the whole map on every put (about 1 ms each); now once a
// second.
func BenchmarkMemoPut(b *testing.B) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m := newMemo[int]()
	for i := range 100_000 {
		m.put(strconv.Itoa(i), i, false, t0, t0.Add(time.Hour))
	}
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = "t" + strconv.Itoa(i)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		m.put(ids[i], i, false, now, now.Add(time.Hour))
	}
}
