package platform

import (
	"errors"

	"github.com/emailscout/emailscout/pkg/events"
)

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that retrying cannot fix (a malformed event, a
// check that no longer exists). Consume terminates such messages.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked Permanent or wraps
// events.ErrEvent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) || errors.Is(err, events.ErrEvent)
}
