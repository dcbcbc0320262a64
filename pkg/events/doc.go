// Package events is the contract between Email Scout's services: the NATS
// subjects they publish on, one Go type per event with its JSON shape, the
// message ids used for JetStream de-duplication (the Nats-Msg-Id header), and
// the definitions of the stream, durable consumers and KV buckets.
//
// It imports the standard library only, so that any service, tool or
// third-party consumer can depend on it without pulling in NATS.
//
// # Subjects
//
// Every subject carries routing tokens after its two-part name:
//
//	test.scheduled.<site>.<check>     scheduler, evaluator -> sender, evaluator
//	mail.sent.<site>.<check>          sender   -> evaluator
//	mail.returned.<site>.<check>      receiver -> evaluator
//	service.checked.<site>.<check>    sender   -> evaluator
//	check.timeout.<site>.<check>      evaluator -> evaluator
//	check.result.<site>.<check>       evaluator -> recorder
//	incident.open.<check>             evaluator -> notifier, recorder
//	incident.resolved.<check>         evaluator -> notifier, recorder
//	notification.sent.<check>         notifier -> recorder
//	notification.failed.<check>       notifier -> recorder
//	notification.suppressed.<check>   notifier -> recorder
//	monitor.health.<site>             evaluator -> stream only (metrics carry it to alerts)
//
// catalog.go lists every subject name with its routing; NamesOf gives the
// names of an event type, which consumers' routers subscribe to
// (docs/architecture.md, "Subjects").
//
// Site names and check ids are restricted to [a-z0-9_-] (see ValidToken) so
// that they can never add or hide a subject token.
//
// # Versioning
//
// Every event carries "v" (SchemaVersion). A consumer must accept events with
// the version it knows and may Term events with a newer major version it
// cannot read. Fields are only ever added; a removed or retyped field is a new
// version.
//
// The design these types follow is described in docs/architecture.md.
package events
