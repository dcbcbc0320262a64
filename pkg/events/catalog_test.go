package events

import (
	"slices"
	"testing"
	"time"
)

// samples holds one valid event of every type, with its names.
func samples() map[string]struct {
	ev    Event
	names []string
} {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	type entry = struct {
		ev    Event
		names []string
	}
	return map[string]entry{
		"TestScheduled":  {TestScheduled{V: 1, TestID: "t1", CheckID: "c", Site: "s", Kind: KindRoundTrip, Attempt: 1, Reason: ReasonInterval, ScheduledAt: now}, NamesOf[TestScheduled]()},
		"MailSent":       {MailSent{V: 1, TestID: "t1", CheckID: "c", Site: "s", Status: SentOK, StartedAt: now}, NamesOf[MailSent]()},
		"MailReturned":   {MailReturned{V: 1, TestID: "t1", CheckID: "c", Site: "s", StartedAt: now, ReceivedAt: now}, NamesOf[MailReturned]()},
		"MailBounced":    {MailBounced{V: 1, TestID: "t1", CheckID: "c", Site: "s", Action: BounceFailed, ReceivedAt: now}, NamesOf[MailBounced]()},
		"CheckTimeout":   {CheckTimeout{V: 1, TestID: "t1", CheckID: "c", Site: "s", Deadline: DeadlineReturn}, NamesOf[CheckTimeout]()},
		"ServiceChecked": {ServiceChecked{V: 1, TestID: "t1", CheckID: "c", Site: "s", Kind: KindSMTP, Attempt: 1, StartedAt: now}, NamesOf[ServiceChecked]()},
		"CheckResult":    {CheckResult{V: 1, TestID: "t1", CheckID: "c", Site: "s", Kind: KindRoundTrip, Attempt: 1, Status: StatusOK}, NamesOf[CheckResult]()},
		"IncidentOpen":   {IncidentOpen{V: 1, IncidentID: "i", CheckID: "c", Severity: SeverityCritical, OpenedAt: now}, NamesOf[IncidentOpen]()},
		"IncidentResolved": {IncidentResolved{V: 1, IncidentID: "i", CheckID: "c", ResolvedAt: now},
			NamesOf[IncidentResolved]()},
		"Notification":       {Notification{V: 1, IncidentID: "i", CheckID: "c", Outcome: NotifySuppressed}, NamesOf[Notification]()},
		"MonitorHealthEvent": {MonitorHealthEvent{V: 1, Site: "s", Status: MonitorOK}, NamesOf[MonitorHealthEvent]()},
	}
}

// TestCatalogCoversEveryType: every subject name of the catalog belongs to
// exactly one event type, every name of a type is in the catalog, and an
// event's Subject() starts with one of its type's names and parses back
// with the catalog's routing.
func TestCatalogCoversEveryType(t *testing.T) {
	owner := map[string]string{}
	for typ, s := range samples() {
		if len(s.names) == 0 {
			t.Errorf("%s: NamesOf is empty", typ)
		}
		for _, n := range s.names {
			if _, ok := RoutingOf(n); !ok {
				t.Errorf("%s: name %q is not in the catalog", typ, n)
			}
			if prev, dup := owner[n]; dup {
				t.Errorf("name %q belongs to %s and %s", n, prev, typ)
			}
			owner[n] = typ
		}
		if err := s.ev.Validate(); err != nil {
			t.Fatalf("%s sample: %v", typ, err)
		}
		subj, err := ParseSubject(s.ev.Subject())
		if err != nil {
			t.Errorf("%s: Subject() %q does not parse: %v", typ, s.ev.Subject(), err)
			continue
		}
		if !slices.Contains(s.names, subj.Name) {
			t.Errorf("%s: Subject() %q is not on one of its names %v", typ, s.ev.Subject(), s.names)
		}
	}
	for _, n := range SubjectNames() {
		if _, ok := owner[n]; !ok {
			t.Errorf("catalog name %q has no event type (add the type to samples)", n)
		}
	}
}
