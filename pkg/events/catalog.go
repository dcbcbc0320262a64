package events

import "sort"

// Routing says which tokens follow a subject name.
type Routing int

// Routings of the subject names.
const (
	RoutedBySiteAndCheck Routing = iota + 1 // <name>.<site>.<check>
	RoutedByCheck                           // <name>.<check>
	RoutedBySite                            // <name>.<site>
)

// routingOf is the catalog of subject names: every name an event is
// published on, with its routing tokens. Adding an event is one type with
// its names() method and one line here; consumers subscribe through a
// router that reads NamesOf (internal/platform), and docs/architecture.md's
// subject table is checked against this catalog by a test.
var routingOf = map[string]Routing{
	SubjectTestScheduled:          RoutedBySiteAndCheck,
	SubjectMailSent:               RoutedBySiteAndCheck,
	SubjectMailReturned:           RoutedBySiteAndCheck,
	SubjectMailBounced:            RoutedBySiteAndCheck,
	SubjectCheckTimeout:           RoutedBySiteAndCheck,
	SubjectCheckResult:            RoutedBySiteAndCheck,
	SubjectServiceChecked:         RoutedBySiteAndCheck,
	SubjectIncidentOpen:           RoutedByCheck,
	SubjectIncidentResolved:       RoutedByCheck,
	SubjectNotificationSent:       RoutedByCheck,
	SubjectNotificationFailed:     RoutedByCheck,
	SubjectNotificationSuppressed: RoutedByCheck,
	SubjectMonitorHealth:          RoutedBySite,
}

// SubjectNames returns every subject name of the catalog, sorted.
func SubjectNames() []string {
	names := make([]string, 0, len(routingOf))
	for n := range routingOf {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// RoutingOf returns the routing of a subject name (false for a name that
// is not in the catalog).
func RoutingOf(name string) (Routing, bool) {
	r, ok := routingOf[name]
	return r, ok
}

// NamesOf returns the subject names that events of type T are published
// on: one for most types, three for Notification (sent, failed,
// suppressed).
func NamesOf[T any, P interface {
	*T
	Event
}]() []string {
	var v T
	return P(&v).names()
}

// names implements Event for every event type.
func (TestScheduled) names() []string      { return []string{SubjectTestScheduled} }
func (MailSent) names() []string           { return []string{SubjectMailSent} }
func (MailReturned) names() []string       { return []string{SubjectMailReturned} }
func (MailBounced) names() []string        { return []string{SubjectMailBounced} }
func (CheckTimeout) names() []string       { return []string{SubjectCheckTimeout} }
func (CheckResult) names() []string        { return []string{SubjectCheckResult} }
func (ServiceChecked) names() []string     { return []string{SubjectServiceChecked} }
func (IncidentOpen) names() []string       { return []string{SubjectIncidentOpen} }
func (IncidentResolved) names() []string   { return []string{SubjectIncidentResolved} }
func (MonitorHealthEvent) names() []string { return []string{SubjectMonitorHealth} }
func (Notification) names() []string {
	return []string{SubjectNotificationSent, SubjectNotificationFailed, SubjectNotificationSuppressed}
}
