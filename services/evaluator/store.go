package evaluator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errConflict means another writer changed a key since it was read: the
// event is handled again against fresh state (a temporary error).
var errConflict = errors.New("state changed concurrently")

// store is a typed view of a JetStream KV bucket with compare-and-set
// writes and a short read cache. Every write names the revision it read
// (0: the key must not exist), so two evaluators can never overwrite each
// other's decisions unseen.
type store struct {
	kv  jetstream.KeyValue
	ttl time.Duration // cache lifetime, in real time: it bounds how long a
	// write by another replica can go unseen before a read
	now func() time.Time // the real clock (time.Now); a test's own

	mu    sync.Mutex
	cache map[string]cached
	swept time.Time // the last removal of expired entries
}

// cacheMax bounds the read cache; past it the cache starts over. Entries
// older than ttl are never used (get reads KV again), so remember drops
// them once per ttl: the cache holds about one ttl's writes, not the last
// cacheMax keys whatever their age.
const cacheMax = 50000

type cached struct {
	rev  uint64
	data []byte // nil: the key does not exist (at rev, 0 if never)
	at   time.Time
}

func newStore(kv jetstream.KeyValue) *store {
	return &store{kv: kv, ttl: time.Second, now: time.Now, cache: map[string]cached{}}
}

// get reads key into v. It returns the revision to pass to put (0 and
// found=false when the key does not exist).
func (s *store) get(ctx context.Context, key string, v any) (rev uint64, found bool, err error) {
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if !ok || s.now().Sub(c.at) > s.ttl {
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			c = cached{at: s.now()}
		case err != nil:
			return 0, false, fmt.Errorf("read %s: %w", key, err)
		default:
			c = cached{rev: e.Revision(), data: e.Value(), at: s.now()}
		}
		s.remember(key, c)
	}
	if c.data == nil {
		return c.rev, false, nil
	}
	if err := json.Unmarshal(c.data, v); err != nil {
		return 0, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return c.rev, true, nil
}

// put writes v at key if the key is still at rev (0: create; ttl > 0 makes
// the key expire). It returns the new revision, or errConflict.
func (s *store) put(ctx context.Context, key string, v any, rev uint64, ttl time.Duration) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return s.putData(ctx, key, data, rev, ttl)
}

// putData is put of a value already encoded as JSON.
func (s *store) putData(ctx context.Context, key string, data []byte, rev uint64, ttl time.Duration) (uint64, error) {
	var (
		newRev uint64
		err    error
	)
	if rev == 0 {
		var opts []jetstream.KVCreateOpt
		if ttl > 0 {
			opts = append(opts, jetstream.KeyTTL(ttl))
		}
		newRev, err = s.kv.Create(ctx, key, data, opts...)
	} else {
		newRev, err = s.kv.Update(ctx, key, data, rev)
	}
	if err != nil {
		s.forget(key)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("write %s: %w", key, errConflict)
		}
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	s.remember(key, cached{rev: newRev, data: data, at: s.now()})
	return newRev, nil
}

// del deletes key if it is still at rev.
func (s *store) del(ctx context.Context, key string, rev uint64) error {
	err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	s.forget(key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("delete %s: %w", key, errConflict)
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func (s *store) remember(key string, c cached) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.now(); now.Sub(s.swept) > s.ttl {
		for k, old := range s.cache {
			if now.Sub(old.at) > s.ttl {
				delete(s.cache, k)
			}
		}
		s.swept = now
	}
	if len(s.cache) > cacheMax {
		clear(s.cache)
	}
	s.cache[key] = c
}

func (s *store) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cache, key)
}
