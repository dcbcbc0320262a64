// Package fault is Email Scout's one vocabulary for "will trying again
// help?". An error is temporary (a retry may succeed: a 4xx reply, a
// dropped connection, a store that is briefly away), permanent (the same
// input fails the same way: a malformed event, a 5xx reply, a refused
// credential) or unmarked (nobody said).
//
// An error is marked by Temporary or Permanent, or by any error in its
// chain that has a method Temporary() bool: the convention of
// context.DeadlineExceeded, of pkg/submit.Error
// (SMTP replies, RFC 5321 section 4.2.1: 4yz temporary, 5yz permanent), of
// the POP3 client's error (RFC 2449 section 8) and of the notifier's
// delivery.Error. The outermost mark wins, so a caller can re-mark what a
// library said. A network error (net.Error) is temporary, whatever its own
// deprecated Temporary method says (it calls a reset connection
// permanent), except a DNS answer that the name does not exist.
//
// What an unmarked error means depends on the caller, and the two
// predicates say it in their names:
//
//   - MarkedPermanent: only a marked-permanent error is permanent; an
//     unmarked one is treated as temporary. For loops that retry with a
//     bound of their own, such as a JetStream consumer (terminate only what
//     can never succeed, redeliver the rest).
//   - MarkedTemporary: only a marked-temporary error is temporary; an
//     unmarked one is treated as permanent. For callers that must not ask
//     for a retry they cannot justify, such as scout-reflector's exit code
//     75 (EX_TEMPFAIL, which makes the MTA queue the message again).
//
// It imports the standard library only.
package fault

import (
	"errors"
	"net"
)

// Class is what an error says about retrying.
type Class int

// The classes Of returns.
const (
	ClassUnmarked  Class = iota // nobody said
	ClassTemporary              // a retry may succeed
	ClassPermanent              // a retry fails the same way
)

// String returns "unmarked", "temporary" or "permanent".
func (c Class) String() string {
	switch c {
	case ClassTemporary:
		return "temporary"
	case ClassPermanent:
		return "permanent"
	}
	return "unmarked"
}

// marked wraps an error with a class; it has the Temporary() bool method
// that Of looks for, so that other packages' checks see the mark too.
type marked struct {
	err       error
	temporary bool
}

func (m marked) Error() string   { return m.err.Error() }
func (m marked) Unwrap() error   { return m.err }
func (m marked) Temporary() bool { return m.temporary }

// Temporary marks err as one that a retry may fix. It returns nil for nil.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return marked{err: err, temporary: true}
}

// Permanent marks err as one that a retry cannot fix. It returns nil for
// nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return marked{err: err, temporary: false}
}

// temporaryer is the method that marks an error, here and in the standard
// library.
type temporaryer interface{ Temporary() bool }

// Of returns the class of err: the answer of the outermost error in its
// chain (errors.As order) that has a Temporary() bool method, or
// ClassUnmarked when none has (and for nil). A net.Error is temporary
// unless it is a *net.DNSError saying the name does not exist.
func Of(err error) Class {
	var t temporaryer
	if !errors.As(err, &t) {
		return ClassUnmarked
	}
	if ne, ok := t.(net.Error); ok {
		var dns *net.DNSError
		if errors.As(ne, &dns) && dns.IsNotFound {
			return ClassPermanent
		}
		return ClassTemporary
	}
	if t.Temporary() {
		return ClassTemporary
	}
	return ClassPermanent
}

// MarkedPermanent reports whether err is marked permanent. An unmarked
// error is not: callers using this predicate retry it.
func MarkedPermanent(err error) bool { return Of(err) == ClassPermanent }

// MarkedTemporary reports whether err is marked temporary. An unmarked
// error is not: callers using this predicate give up on it.
func MarkedTemporary(err error) bool { return Of(err) == ClassTemporary }
