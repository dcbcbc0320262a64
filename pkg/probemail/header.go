package probemail

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode RFC 2047 words in legacy charsets
)

// Header field names.
const (
	HeaderProbe       = "X-Scout-Probe"
	HeaderReflectedAt = "X-Scout-Reflected-At"
	HeaderProbeTo     = "X-Scout-Probe-To"
)

// Version is the probe header version this package writes and reads.
const Version = 1

// Errors returned by ParseHeader and Verify. Each is wrapped with detail.
var (
	ErrNoProbe      = errors.New("no X-Scout-Probe header")
	ErrMalformed    = errors.New("malformed X-Scout-Probe header")
	ErrVersion      = errors.New("unsupported X-Scout-Probe version")
	ErrUnknownKey   = errors.New("unknown probe key")
	ErrBadSignature = errors.New("bad probe signature")
)

// Probe holds the signed facts of one probe.
type Probe struct {
	KeyID     string    // k: the signing key's id
	TestID    string    // id: unique per attempt
	CheckID   string    // c
	Site      string    // s: the site that sent it
	Attempt   int       // a: 1..
	StartedAt time.Time // t: monitor clock, millisecond precision, UTC
	ReturnTo  string    // r: where the reflector sends it back
}

// canonical is the string the signature covers.
func (p Probe) canonical(to string) string {
	return "v=" + strconv.Itoa(Version) +
		";k=" + p.KeyID +
		";id=" + p.TestID +
		";c=" + p.CheckID +
		";s=" + p.Site +
		";a=" + strconv.Itoa(p.Attempt) +
		";t=" + strconv.FormatInt(p.StartedAt.UnixMilli(), 10) +
		";r=" + p.ReturnTo +
		";to=" + strings.ToLower(strings.TrimSpace(to))
}

func (p Probe) validate() error {
	var errs []error
	if !validKeyID(p.KeyID) {
		errs = append(errs, fmt.Errorf("k=%q", p.KeyID))
	}
	if !validID(p.TestID) {
		errs = append(errs, fmt.Errorf("id=%q", p.TestID))
	}
	if !events.ValidToken(p.CheckID) {
		errs = append(errs, fmt.Errorf("c=%q", p.CheckID))
	}
	if !events.ValidToken(p.Site) {
		errs = append(errs, fmt.Errorf("s=%q", p.Site))
	}
	if p.Attempt < 1 || p.Attempt > 99 {
		errs = append(errs, fmt.Errorf("a=%d", p.Attempt))
	}
	if p.StartedAt.IsZero() || p.StartedAt.UnixMilli() <= 0 {
		errs = append(errs, fmt.Errorf("t=%d", p.StartedAt.UnixMilli()))
	}
	if !validAddr(p.ReturnTo) {
		errs = append(errs, fmt.Errorf("r=%q", p.ReturnTo))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: invalid field(s): %w", ErrMalformed, errors.Join(errs...))
	}
	return nil
}

// validID accepts test ids: 1 to 64 characters of [a-z0-9_-]. NewTestID's
// ids fit; the looser rule keeps ids of other generators readable.
func validID(s string) bool { return events.ValidToken(s) }

// validAddr accepts a bare addr-spec without characters that would break the
// header's syntax.
func validAddr(s string) bool {
	if s == "" || len(s) > 254 || strings.ContainsAny(s, "; \t\r\n<>\"=") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s
}

// Sign returns the X-Scout-Probe header value for p sent to the address to,
// signed with key. It fails when a field cannot be represented (see
// validate) or key.ID differs from p.KeyID.
func Sign(p Probe, to string, key Key) (string, error) {
	if p.KeyID == "" {
		p.KeyID = key.ID
	}
	if p.KeyID != key.ID {
		return "", fmt.Errorf("sign probe: key id %q differs from the probe's k=%q", key.ID, p.KeyID)
	}
	p.StartedAt = p.StartedAt.Truncate(time.Millisecond)
	if err := p.validate(); err != nil {
		return "", fmt.Errorf("sign probe: %w", err)
	}
	mac := hmac.New(sha256.New, key.Secret)
	mac.Write([]byte(p.canonical(to)))
	sig := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	return fmt.Sprintf("v=%d; k=%s; id=%s; c=%s; s=%s; a=%d; t=%d; r=%s; sig=%s",
		Version, p.KeyID, p.TestID, p.CheckID, p.Site, p.Attempt, p.StartedAt.UnixMilli(), p.ReturnTo, sig), nil
}

// ParseHeader parses an X-Scout-Probe value without verifying it. The value
// may be folded or RFC 2047-encoded: it is decoded, and all white space is
// removed (no field value contains any). It returns the probe, the
// signature, and an error wrapping ErrMalformed or ErrVersion.
func ParseHeader(value string) (Probe, []byte, error) {
	v := decodeWords(value)
	v = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, v)
	if v == "" {
		return Probe{}, nil, ErrNoProbe
	}
	fields := map[string]string{}
	for _, part := range strings.Split(v, ";") {
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return Probe{}, nil, fmt.Errorf("%w: %q is not key=value", ErrMalformed, part)
		}
		k = strings.ToLower(k)
		if _, dup := fields[k]; dup {
			return Probe{}, nil, fmt.Errorf("%w: %s= appears twice", ErrMalformed, k)
		}
		fields[k] = val
	}
	if fields["v"] != strconv.Itoa(Version) {
		return Probe{}, nil, fmt.Errorf("%w: v=%q (this build reads v=%d)", ErrVersion, fields["v"], Version)
	}
	for _, k := range []string{"k", "id", "c", "s", "a", "t", "r", "sig"} {
		if fields[k] == "" {
			return Probe{}, nil, fmt.Errorf("%w: %s= is missing", ErrMalformed, k)
		}
	}
	attempt, err := strconv.Atoi(fields["a"])
	if err != nil {
		return Probe{}, nil, fmt.Errorf("%w: a=%q is not a number", ErrMalformed, fields["a"])
	}
	ms, err := strconv.ParseInt(fields["t"], 10, 64)
	if err != nil {
		return Probe{}, nil, fmt.Errorf("%w: t=%q is not unix milliseconds", ErrMalformed, fields["t"])
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(fields["sig"], "="))
	if err != nil || len(sig) != sha256.Size {
		return Probe{}, nil, fmt.Errorf("%w: sig is not a base64url HMAC-SHA256", ErrMalformed)
	}
	p := Probe{
		KeyID: fields["k"], TestID: fields["id"], CheckID: fields["c"], Site: fields["s"],
		Attempt: attempt, StartedAt: time.UnixMilli(ms).UTC(), ReturnTo: fields["r"],
	}
	if err := p.validate(); err != nil {
		return Probe{}, nil, err
	}
	return p, sig, nil
}

// KeyLookup finds verification keys by id (a *Keyring is one).
type KeyLookup interface {
	Lookup(id string) (Key, bool)
}

// Verify parses value and checks its signature for a probe addressed to to.
// It returns the probe and the key that signed it (callers check that
// Key.Customer owns Probe.CheckID), or an error wrapping ErrNoProbe,
// ErrMalformed, ErrVersion, ErrUnknownKey or ErrBadSignature.
func Verify(value, to string, keys KeyLookup) (Probe, Key, error) {
	p, sig, err := ParseHeader(value)
	if err != nil {
		return Probe{}, Key{}, err
	}
	key, ok := keys.Lookup(p.KeyID)
	if !ok {
		return Probe{}, Key{}, fmt.Errorf("%w: %q", ErrUnknownKey, p.KeyID)
	}
	mac := hmac.New(sha256.New, key.Secret)
	mac.Write([]byte(p.canonical(to)))
	if !hmac.Equal(mac.Sum(nil), sig) {
		return Probe{}, Key{}, fmt.Errorf("%w: key %q, test %s, to %q", ErrBadSignature, p.KeyID, p.TestID, to)
	}
	return p, key, nil
}

// decodeWords decodes RFC 2047 encoded-words; on failure it returns s.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	dec := mime.WordDecoder{CharsetReader: message.CharsetReader}
	if out, err := dec.DecodeHeader(s); err == nil {
		return out
	}
	return s
}
