package sender

import (
	"bytes"
	"net"
	"testing"
)

// TestOrderMX: MX hosts go by preference, lowest first (RFC 5321 section
// 5.1); hosts of equal preference are shuffled with Deps.Rand.
func TestOrderMX(t *testing.T) {
	mxs := []*net.MX{{Host: "c.example.", Pref: 30}, {Host: "a1.example.", Pref: 10}, {Host: "b.example.", Pref: 20}, {Host: "a2.example.", Pref: 10}}
	seen := map[string]bool{}
	for _, fill := range []byte{0x00, 0x01, 0x7f, 0xff} {
		s := &Sender{deps: Deps{Rand: bytes.NewReader(bytes.Repeat([]byte{fill}, 64))}}
		got := s.orderMX(mxs)
		if len(got) != 4 || got[2] != "b.example" || got[3] != "c.example" {
			t.Fatalf("order %v", got)
		}
		if !(got[0] == "a1.example" && got[1] == "a2.example" || got[0] == "a2.example" && got[1] == "a1.example") {
			t.Fatalf("order %v: the preference-10 hosts do not come first", got)
		}
		seen[got[0]] = true
	}
	if len(seen) != 2 {
		t.Errorf("equal-preference hosts never shuffled: first hosts %v", seen)
	}
}
