package platform

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MembersConfig configures Members.
type MembersConfig struct {
	// Prefix is the KV key prefix of the members ("replica."); a member's
	// key is Prefix + ID.
	Prefix string
	// ID names this replica: a valid KV key token, unique among live
	// replicas (NewMemberID).
	ID string
	// Partitions is how many partitions are divided.
	Partitions int
	// Heartbeat is how often this replica writes its key; a member whose
	// key was not written for Expiry is taken as gone (and its key
	// deleted). Both run on the real clock: they are about processes, like
	// JetStream's own timers.
	Heartbeat, Expiry time.Duration
}

// Members is one replica's view of the live replicas of its service, kept
// in a KV bucket, and of the partitions it owns among them by rendezvous
// (highest random weight) hashing: every replica computes the same owner
// for each partition from the same set of members, without coordination,
// and when a member comes or goes only the partitions it wins or held
// move. It implements Preference for ConsumePartitions. Until the first
// view is read it prefers nothing.
type Members struct {
	cfg MembersConfig
	kv  jetstream.KeyValue
	log *slog.Logger

	mu      sync.Mutex
	seen    map[string]memberSeen // by ID, others and this one
	owner   []string              // by partition; nil before the first view
	changed chan struct{}
	ready   chan struct{} // closed at the first view
}

type memberSeen struct {
	at  time.Time // real time this replica saw the key written
	rev uint64
}

// NewMembers returns this replica's Members; Run keeps it.
func NewMembers(cfg MembersConfig, kv jetstream.KeyValue, log *slog.Logger) (*Members, error) {
	if kv == nil || cfg.ID == "" || strings.ContainsAny(cfg.ID, ".*> ") || cfg.Partitions < 1 || cfg.Heartbeat <= 0 || cfg.Expiry <= cfg.Heartbeat {
		return nil, errors.New("members: a KV bucket, an ID without '.', '*', '>' or spaces, partitions, and an expiry longer than the heartbeat are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Members{cfg: cfg, kv: kv, log: log, seen: map[string]memberSeen{}, changed: make(chan struct{}), ready: make(chan struct{})}, nil
}

// NewMemberID returns a fresh replica ID: the host name (a pod's name)
// and a random suffix, so that a restarted replica is a new member.
func NewMemberID(host string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(host) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	return strings.TrimPrefix(b.String()+"-"+randomHex(4), "-")
}

// Preferred reports whether this replica owns partition p.
func (m *Members) Preferred(p int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owner != nil && m.owner[p] == m.cfg.ID
}

// Changed returns a channel closed at the next change of ownership.
func (m *Members) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// Ready returns a channel closed when the first view of the members is
// read (Preferred answers from then on).
func (m *Members) Ready() <-chan struct{} { return m.ready }

// Live returns the IDs of the members this replica sees, sorted.
func (m *Members) Live() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.seen))
	for id := range m.seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Run writes this replica's key every Heartbeat, watches every member's,
// expires the silent ones, and deletes its own key when ctx ends. It
// returns nil when ctx ends, an error only if the watch cannot start.
func (m *Members) Run(ctx context.Context) error {
	own := m.cfg.Prefix + m.cfg.ID
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = m.kv.Delete(dctx, own)
	}()
	m.beat(ctx)
	w, err := m.kv.Watch(ctx, m.cfg.Prefix+"*")
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	tick := time.NewTicker(m.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			m.saw(e)
		case <-tick.C:
			m.beat(ctx)
			m.expire(ctx)
		}
	}
}

// beat writes this replica's key.
func (m *Members) beat(ctx context.Context) {
	if _, err := m.kv.Put(ctx, m.cfg.Prefix+m.cfg.ID, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil && ctx.Err() == nil {
		m.log.Warn("member heartbeat not written", "error", err)
	}
}

// saw applies one watch update; nil marks the end of the initial values.
func (m *Members) saw(e jetstream.KeyValueEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e != nil {
		id := strings.TrimPrefix(e.Key(), m.cfg.Prefix)
		if e.Operation() == jetstream.KeyValuePut {
			m.seen[id] = memberSeen{at: time.Now(), rev: e.Revision()}
		} else {
			delete(m.seen, id)
		}
		if m.owner == nil {
			return // still reading the initial values
		}
	}
	m.assign()
}

// expire drops the members not written for Expiry and deletes their keys
// (if not written meanwhile).
func (m *Members) expire(ctx context.Context) {
	m.mu.Lock()
	var gone map[string]uint64
	for id, s := range m.seen {
		if id != m.cfg.ID && time.Since(s.at) > m.cfg.Expiry {
			if gone == nil {
				gone = map[string]uint64{}
			}
			gone[id] = s.rev
			delete(m.seen, id)
		}
	}
	if gone != nil && m.owner != nil {
		m.assign()
	}
	m.mu.Unlock()
	for id, rev := range gone {
		m.log.Info("member expired", "member", id)
		_ = m.kv.Delete(ctx, m.cfg.Prefix+id, jetstream.LastRevision(rev))
	}
}

// assign recomputes the owner of every partition and signals a change.
// m.mu is held.
func (m *Members) assign() {
	ids := make([]string, 0, len(m.seen)+1)
	ids = append(ids, m.cfg.ID)
	for id := range m.seen {
		if id != m.cfg.ID {
			ids = append(ids, id)
		}
	}
	owner := make([]string, m.cfg.Partitions)
	for p := range owner {
		owner[p] = RendezvousOwner(ids, p)
	}
	if slices.Equal(owner, m.owner) {
		return
	}
	if m.owner == nil {
		close(m.ready)
	}
	m.owner = owner
	close(m.changed)
	m.changed = make(chan struct{})
}

// RendezvousOwner returns the member of ids with the highest weight for
// partition p (FNV-1a of the ID and p; ties go to the smaller ID), so that
// replicas with the same members agree on the owner.
func RendezvousOwner(ids []string, p int) string {
	var best string
	var bestW uint64
	for _, id := range ids {
		h := fnv.New64a()
		h.Write([]byte(id))
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(p))
		h.Write(b[:])
		w := mix64(h.Sum64())
		if best == "" || w > bestW || w == bestW && id < best {
			best, bestW = id, w
		}
	}
	return best
}

// mix64 is a 64-bit finalizer (SplitMix64's), which spreads FNV's weak
// high bits so that weights of near-equal inputs are independent.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
