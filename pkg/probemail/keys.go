package probemail

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// MinSecretLen is the shortest accepted HMAC key, in bytes (RFC 2104 asks for
// at least the hash output length, 32, and we accept 16 for legacy keys).
const MinSecretLen = 16

// Secret is key material. It prints and logs as "[redacted]".
type Secret []byte

// String implements fmt.Stringer without revealing the secret.
func (Secret) String() string { return "[redacted]" }

// LogValue implements slog.LogValuer without revealing the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Key is one probe signing key of one customer.
type Key struct {
	ID       string // [A-Za-z0-9._-]{1,64}, unique across customers
	Customer string // the customer whose probes it signs
	Secret   Secret
}

// Keyring holds the keys a service or reflector knows. It signs each
// customer's probes with that customer's first key and verifies with any key,
// so a new key is rolled out by adding it second everywhere, then moving it
// first, then removing the old one.
type Keyring struct {
	byID   map[string]Key
	active map[string]string // customer -> key id
	order  []string
}

// ErrKeySpec is wrapped by ParseKeys errors.
var ErrKeySpec = errors.New("invalid probe key list")

// NewKeyring builds a keyring. It fails on a duplicate key id, an invalid id
// or customer, or a secret shorter than MinSecretLen.
func NewKeyring(keys ...Key) (*Keyring, error) {
	k := &Keyring{byID: map[string]Key{}, active: map[string]string{}}
	for _, key := range keys {
		if !validKeyID(key.ID) {
			return nil, fmt.Errorf("%w: key id %q must be 1 to 64 characters of A-Z a-z 0-9 . _ -", ErrKeySpec, key.ID)
		}
		if key.Customer == "" || strings.ContainsAny(key.Customer, ":;, \t\r\n") {
			return nil, fmt.Errorf("%w: key %q: customer %q is empty or has separators", ErrKeySpec, key.ID, key.Customer)
		}
		if len(key.Secret) < MinSecretLen {
			return nil, fmt.Errorf("%w: key %q: secret is %d bytes, at least %d are required", ErrKeySpec, key.ID, len(key.Secret), MinSecretLen)
		}
		if _, dup := k.byID[key.ID]; dup {
			return nil, fmt.Errorf("%w: key id %q is listed twice", ErrKeySpec, key.ID)
		}
		k.byID[key.ID] = key
		k.order = append(k.order, key.ID)
		if _, ok := k.active[key.Customer]; !ok {
			k.active[key.Customer] = key.ID
		}
	}
	return k, nil
}

// ParseKeys reads a key list such as the SCOUT_PROBE_KEYS environment
// variable: entries "customer:keyid:secret" separated by ';', ',' or new
// lines, the secret in base64 (standard or URL alphabet, padding optional).
// The first entry of each customer is the signing key.
func ParseKeys(spec string) (*Keyring, error) {
	var keys []Key
	fields := strings.FieldsFunc(spec, func(r rune) bool { return r == ';' || r == ',' || r == '\n' || r == '\r' })
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		parts := strings.Split(f, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%w: entry %d is not customer:keyid:base64-secret", ErrKeySpec, i+1)
		}
		secret, err := decodeBase64(parts[2])
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d (key %q): secret is not base64", ErrKeySpec, i+1, parts[1])
		}
		keys = append(keys, Key{Customer: parts[0], ID: parts[1], Secret: secret})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrKeySpec)
	}
	return NewKeyring(keys...)
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// Lookup returns the key with the given id.
func (k *Keyring) Lookup(id string) (Key, bool) {
	key, ok := k.byID[id]
	return key, ok
}

// SigningKey returns the key that signs customer's probes, or an error when
// the keyring has none for that customer.
func (k *Keyring) SigningKey(customer string) (Key, error) {
	id, ok := k.active[customer]
	if !ok {
		return Key{}, fmt.Errorf("no probe signing key for customer %q", customer)
	}
	return k.byID[id], nil
}

// KeysOf returns every key of customer, the signing key first: what a
// verifier tries when the key id is not given (a VERP token,
// VERPToken.Verify).
func (k *Keyring) KeysOf(customer string) []Key {
	var out []Key
	for _, id := range k.order {
		if key := k.byID[id]; key.Customer == customer {
			out = append(out, key)
		}
	}
	return out
}

// IDs returns the key ids in the order given.
func (k *Keyring) IDs() []string { return append([]string(nil), k.order...) }

func validKeyID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
