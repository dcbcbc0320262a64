package events

import (
	"encoding/base32"
	"fmt"
	"io"
	"strings"
)

// testIDEncoding is lowercase base32 without padding: ids are safe in a
// Subject, a Message-ID and a file name, and are not case sensitive.
var testIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// TestIDLen is the length of every id NewTestID returns.
const TestIDLen = 24

// NewTestID returns a 24-character id made of 15 random bytes from rnd
// (crypto/rand.Reader in production, a seeded source in tests). Ids are not
// guessable, so that a stranger who knows the schedule cannot forge the id of
// a test in flight. It returns an error only when rnd fails.
func NewTestID(rnd io.Reader) (string, error) {
	var b [15]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", fmt.Errorf("new test id: %w", err)
	}
	return testIDEncoding.EncodeToString(b[:]), nil
}

// ValidTestID reports whether s has the shape NewTestID produces.
func ValidTestID(s string) bool {
	if len(s) != TestIDLen {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz234567") == ""
}
