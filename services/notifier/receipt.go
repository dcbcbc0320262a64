package notifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Transitions of an incident.
const (
	TransitionOpen     = "open"
	TransitionResolved = "resolved"
)

// StatePending is a receipt's state while its message is being sent; the
// final states are events.NotifySent, NotifyFailed and NotifySuppressed.
const StatePending = "pending"

// Receipt is the record of one message (incident, transition, contact) in
// the KV bucket events.BucketNotifications. It is created with
// compare-and-set before anything is sent, so exactly one replica owns a
// message; every later change is an update at the revision last read.
type Receipt struct {
	V          int    `json:"v"`
	IncidentID string `json:"incident_id"`
	CheckID    string `json:"check_id"`
	Customer   string `json:"customer"`
	Transition string `json:"transition"` // TransitionOpen, TransitionResolved
	Contact    string `json:"contact"`
	Phone      string `json:"phone"` // E.164

	// State is StatePending, then sent, failed or suppressed.
	State string `json:"state"`
	// Owner is the replica sending a pending message, until LeaseUntil.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// InFlight: a provider request was started and its outcome is not
	// known (no answer yet). A replica that takes over an expired lease
	// never resends such a message: it records it as failed.
	InFlight bool `json:"in_flight,omitempty"`
	// Attempts counts provider requests started.
	Attempts int `json:"attempts"`

	Provider   string `json:"provider,omitempty"`
	ProviderID string `json:"provider_id,omitempty"` // e.g. the Twilio message SID
	Text       string `json:"text"`
	Segments   int    `json:"segments,omitempty"`
	Error      string `json:"error,omitempty"`  // why the message failed
	Reason     string `json:"reason,omitempty"` // why it was suppressed

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Final reports whether the receipt's message is settled.
func (r *Receipt) Final() bool { return r.State != StatePending }

var kvSafe = regexp.MustCompile(`^[-_=A-Za-z0-9]{1,100}$`)

// keyToken makes s usable as one token of a KV key: itself when it is made
// of [-_=A-Za-z0-9], else "h" and 32 hex digits of its SHA-256.
func keyToken(s string) string {
	if kvSafe.MatchString(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h" + hex.EncodeToString(sum[:16])
}

// ReceiptKey is the KV key of a receipt:
// "<check>.<incident>.<transition>.<number without +>", for example
// "acme-roundtrip.inc-rtkkowtutap5.open.15555550100". A contact is
// identified by their number, so two contacts sharing a number get one
// message.
func ReceiptKey(checkID, incidentID, transition, phone string) string {
	return incidentPrefix(checkID, incidentID) + "." + transition + "." + keyToken(strings.TrimPrefix(phone, "+"))
}

func incidentPrefix(checkID, incidentID string) string {
	return keyToken(checkID) + "." + keyToken(incidentID)
}

// receipts reads and writes receipts in the bucket.
type receipts struct {
	kv jetstream.KeyValue
}

var (
	// errLost: another replica changed the receipt since we read it.
	errLost = errors.New("the receipt was changed by another replica")
	// errExists: Create found a receipt.
	errExists = errors.New("the receipt exists")
)

// create writes r at key only if the key does not exist (compare-and-set
// on "no revision"); errExists otherwise.
func (s receipts) create(ctx context.Context, key string, r Receipt) (uint64, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	rev, err := s.kv.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errExists
	}
	if err != nil {
		return 0, fmt.Errorf("create receipt %s: %w", key, err)
	}
	return rev, nil
}

// update writes r at key only if the key is still at rev; errLost
// otherwise.
func (s receipts) update(ctx context.Context, key string, r Receipt, rev uint64) (uint64, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	next, err := s.kv.Update(ctx, key, data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errLost
	}
	if err != nil {
		return 0, fmt.Errorf("update receipt %s: %w", key, err)
	}
	return next, nil
}

// get reads the receipt at key; ok is false when there is none.
func (s receipts) get(ctx context.Context, key string) (r Receipt, rev uint64, ok bool, err error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Receipt{}, 0, false, nil
	}
	if err != nil {
		return Receipt{}, 0, false, fmt.Errorf("read receipt %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Receipt{}, 0, false, fmt.Errorf("read receipt %s: %w", key, err)
	}
	return r, e.Revision(), true, nil
}

// list returns the receipts of one incident transition, keyed by KV key.
func (s receipts) list(ctx context.Context, checkID, incidentID, transition string) (map[string]Receipt, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, incidentPrefix(checkID, incidentID)+"."+transition+".*")
	if err != nil {
		return nil, fmt.Errorf("list receipts of %s: %w", incidentID, err)
	}
	defer func() { _ = lister.Stop() }()
	out := map[string]Receipt{}
	for key := range lister.Keys() {
		r, _, ok, err := s.get(ctx, key)
		if err != nil {
			return nil, err
		}
		if ok {
			out[key] = r
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list receipts of %s: %w", incidentID, err)
	}
	return out, nil
}
