package events

import (
	"fmt"
	"strings"
)

// Subject names: the first two tokens of every subject.
const (
	SubjectTestScheduled      = "test.scheduled"
	SubjectMailSent           = "mail.sent"
	SubjectMailReturned       = "mail.returned"
	SubjectCheckTimeout       = "check.timeout"
	SubjectCheckResult        = "check.result"
	SubjectIncidentOpen       = "incident.open"
	SubjectIncidentResolved   = "incident.resolved"
	SubjectNotificationSent   = "notification.sent"
	SubjectNotificationFailed = "notification.failed"
	SubjectMonitorHealth      = "monitor.health"
	SubjectServiceChecked     = "service.checked"
	SubjectMailBounced        = "mail.bounced"
)

// SubjectNotificationSuppressed: a notification recorded but deliberately
// not sent (Notify=false, a maintenance window, an open nobody received).
const SubjectNotificationSuppressed = "notification.suppressed"

// maxTokenLen bounds site names and check ids. Long enough for
// "customer-region-purpose" names, short enough for SMS text and DNS labels.
const maxTokenLen = 63

// ErrSubject is wrapped by every error ParseSubject returns. Like ErrEvent
// it is marked permanent (Temporary() false, as pkg/fault reads it).
var ErrSubject error = invalidSubject{}

type invalidSubject struct{}

func (invalidSubject) Error() string   { return "invalid subject" }
func (invalidSubject) Temporary() bool { return false }

// ValidToken reports whether s may be used as a site name or check id: 1 to 63
// characters of [a-z0-9_-]. Such a token never contains a NATS wildcard or
// separator, so a subject built from it has exactly the tokens intended.
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// SiteCheckSubject returns "<name>.<site>.<check>", for the subjects routed by
// site and check (test.scheduled, mail.sent, mail.returned, check.timeout,
// check.result). It does not validate the tokens; callers validate site and
// check ids when the configuration is loaded.
func SiteCheckSubject(name, site, check string) string {
	return name + "." + site + "." + check
}

// CheckSubject returns "<name>.<check>", for the subjects routed by check only
// (incident.*, notification.*).
func CheckSubject(name, check string) string {
	return name + "." + check
}

// SiteSubject returns "<name>.<site>" (monitor.health).
func SiteSubject(name, site string) string {
	return name + "." + site
}

// Subject is a parsed subject. Site is empty for check-routed subjects and
// Check is empty for site-routed ones.
type Subject struct {
	Name  string // e.g. "mail.returned"
	Site  string
	Check string
}

// String rebuilds the subject.
func (s Subject) String() string {
	switch {
	case s.Site != "" && s.Check != "":
		return SiteCheckSubject(s.Name, s.Site, s.Check)
	case s.Check != "":
		return CheckSubject(s.Name, s.Check)
	default:
		return SiteSubject(s.Name, s.Site)
	}
}

// ParseSubject splits a subject published by Email Scout into its name and
// routing tokens; the stored form's last token, the check's partition
// (PartitionTransform), is checked and dropped. It returns an error wrapping ErrSubject when the name is
// unknown, the number of tokens does not fit the name, or a token is not a
// ValidToken.
func ParseSubject(subject string) (Subject, error) {
	parts := strings.Split(subject, ".")
	if len(parts) < 3 {
		return Subject{}, fmt.Errorf("%w: %q has too few tokens", ErrSubject, subject)
	}
	name := parts[0] + "." + parts[1]
	rest := parts[2:]
	r, ok := routingOf[name]
	if !ok {
		return Subject{}, fmt.Errorf("%w: unknown subject name %q", ErrSubject, name)
	}
	want := 1
	if r == RoutedBySiteAndCheck {
		want = 2
	}
	if r == RoutedBySiteAndCheck && len(rest) == 3 {
		// The stored form carries the check's partition (PartitionTransform).
		if _, ok := ParsePartition(rest[2]); !ok {
			return Subject{}, fmt.Errorf("%w: %q: the last token is not a partition in [0, %d)", ErrSubject, subject, Partitions)
		}
		rest = rest[:2]
	}
	if len(rest) != want {
		return Subject{}, fmt.Errorf("%w: %q: %s takes %d routing token(s), got %d", ErrSubject, subject, name, want, len(rest))
	}
	for _, tok := range rest {
		if !ValidToken(tok) {
			return Subject{}, fmt.Errorf("%w: %q: token %q is not [a-z0-9_-]{1,63}", ErrSubject, subject, tok)
		}
	}
	s := Subject{Name: name}
	switch r {
	case RoutedBySiteAndCheck:
		s.Site, s.Check = rest[0], rest[1]
	case RoutedBySite:
		s.Site = rest[0]
	default:
		s.Check = rest[0]
	}
	return s, nil
}
