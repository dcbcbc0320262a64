package probe

import (
	"errors"
	"fmt"
)

// CredentialsError is checktarget.FromCheck's error when a check's OAuth login cannot
// be built from what the monitor holds (a service account key file that
// cannot be read or is not a key): the monitor's credential, class
// ClassCredentials. It names the check and field, never a secret.
type CredentialsError struct {
	Check string
	Err   error
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("check %q: oauth: %v", e.Check, e.Err)
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// ClassOf is the class of a check that checktarget.FromCheck or
// Logins.Target could
// not make a Target of: ClassNoPassword for a missing variable
// (*MissingPasswordError), ClassCredentials for an OAuth login that
// cannot be built (*CredentialsError), ClassBadTarget otherwise; "" for
// nil. All are the monitor's (StatusMonitorError).
func ClassOf(err error) string {
	var missing *MissingPasswordError
	var cred *CredentialsError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &missing):
		return ClassNoPassword
	case errors.As(err, &cred):
		return ClassCredentials
	}
	return ClassBadTarget
}
