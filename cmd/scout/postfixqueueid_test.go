package main

import (
	"testing"
	"time"
)

func TestPostfixArrival(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want time.Time
		ok   bool
	}{
		// Postfix 3.7's pickup(8) on this project's mail stack named this
		// queue file at 1796483409.697140 (a sendmail started at
		// 1796483409.639).
		{"4jhWxs4xpXz1Hnnv", time.Unix(1796483409, 697140000).UTC(), true},
		// The same second, microsecond zero, another inode.
		{"4jhWxs0000z1", time.Unix(1796483409, 0).UTC(), true},
		{"D7F16874051", time.Time{}, false},      // a short (hex) queue id
		{"4jhWxs4xpXz", time.Time{}, false},      // no inode
		{"4jhWxs4xpz1Hnnv", time.Time{}, false},  // the time part too short
		{"4jhWxs4xpAz1Hnnv", time.Time{}, false}, // a vowel is not in the alphabet
		{"4jhWxsyyyyz1Hnnv", time.Time{}, false}, // microseconds over a second
		{"", time.Time{}, false},
	} {
		got, ok := postfixArrival(tc.id)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("postfixArrival(%q) = %v, %v; want %v, %v", tc.id, got, ok, tc.want, tc.ok)
		}
	}
}
