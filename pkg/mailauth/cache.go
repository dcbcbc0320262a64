package mailauth

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/jonboulle/clockwork"
	"golang.org/x/oauth2"
)

// Cache keeps the token of a TokenSource and fetches a new one before the
// old one expires, on an injected clock (x/oauth2's ReuseTokenSource reads
// the wall clock).
//
// A token's lifetime L is its expires_in (RFC 6749 section 5.1), counted
// from when the cache received it. It is used until RefreshAt: the
// earlier of 80 % of L and 5 minutes before expiry, but never before half
// of L (a 1 h token is renewed after 48 min, a 20 min token after 15 min,
// a 20 s token after 10 s). A token without expires_in is not cached.
//
// When the renewal fails with an error that is not marked permanent, the
// old token is still given while it has more than half of its renewal
// margin left; a permanent error (a revoked secret) is returned at once.
// Tokens returned carry an Expiry on the cache's clock. A Cache is safe
// for concurrent use; one fetch runs at a time.
type Cache struct {
	src   TokenSource
	clock clockwork.Clock

	mu        sync.Mutex
	tok       *oauth2.Token // Expiry on c.clock; nil: none yet
	refreshAt time.Time
	graceEnd  time.Time // the old token may stand in for a failed renewal until then
}

// NewCache wraps src. clock nil means the real clock.
func NewCache(src TokenSource, clock clockwork.Clock) *Cache {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	return &Cache{src: src, clock: clock}
}

// RefreshAt returns, for a token of lifetime life received at got, when
// the cache renews it (see Cache).
func RefreshAt(got time.Time, life time.Duration) time.Time {
	margin := max(life/5, min(5*time.Minute, life/2))
	return got.Add(life - margin)
}

// Token returns the cached token, or fetches a new one when there is
// none or its RefreshAt has come. The token is a copy the caller may keep.
func (c *Cache) Token(ctx context.Context) (*oauth2.Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if c.tok != nil && now.Before(c.refreshAt) {
		return copyToken(c.tok), nil
	}
	t, err := c.src.Token(ctx)
	if err != nil {
		if c.tok != nil && !fault.MarkedPermanent(err) && now.Before(c.graceEnd) {
			return copyToken(c.tok), nil
		}
		return nil, err
	}
	t = copyToken(t)
	now = c.clock.Now()
	life, ok := lifetime(t)
	if !ok {
		c.tok = nil
		t.Expiry = time.Time{}
		return t, nil
	}
	t.Expiry = now.Add(life)
	c.tok = t
	c.refreshAt = RefreshAt(now, life)
	c.graceEnd = t.Expiry.Add(-t.Expiry.Sub(c.refreshAt) / 2)
	return copyToken(t), nil
}

func copyToken(t *oauth2.Token) *oauth2.Token {
	c := *t
	return &c
}

// lifetime reads expires_in: the ExpiresIn that x/oauth2 fills for
// RFC 6749 responses, else the raw member (x/oauth2/jwt keeps it only
// there, as a JSON number or, from some endpoints, a string).
func lifetime(t *oauth2.Token) (time.Duration, bool) {
	if t.ExpiresIn > 0 {
		return time.Duration(t.ExpiresIn) * time.Second, true
	}
	var secs float64
	switch v := t.Extra("expires_in").(type) {
	case float64:
		secs = v
	case json.Number:
		secs, _ = v.Float64()
	case string:
		secs, _ = strconv.ParseFloat(v, 64)
	}
	if secs >= 1 {
		return time.Duration(secs) * time.Second, true
	}
	return 0, false
}
