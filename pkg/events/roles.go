package events

// Role is what one service does with NATS: the subject names it publishes,
// its durable consumer on StreamName, whether it reads the stream with
// ordered (ephemeral) consumers, and the KV buckets it reads or writes.
// A NATS user's permissions are derived from its Role (pkg/natsauth), so
// that a service can publish only what it produces and consume only its
// own consumer; test/contract checks Publishes against the event types
// each service builds and against docs/architecture.md's "from" column.
type Role struct {
	// Service is the service's name ("receiver"), as in docs/architecture.md.
	Service string
	// PerSite: one instance per site (the sender, the receiver), whose
	// NATS user is "<service>-<site>".
	PerSite bool
	// Publishes are the subject names the service publishes (the catalog's
	// names, routingOf).
	Publishes []string
	// OwnSiteOnly narrows every published subject to the instance's site
	// ("<name>.<site>.>"): a sender publishes only its own site's events.
	// The receiver is not narrowed: a return reaching another site's
	// receiver is stored under the site that sent the probe.
	OwnSiteOnly bool
	// Consumer is the service's durable consumer for a site ("" for a
	// service that is not PerSite); nil when it has none.
	Consumer func(site string) ConsumerDef
	// Watches are subject names the service follows with core NATS
	// subscriptions (no consumer), each narrowed to the instance's site
	// ("<name>.<site>.>"): the receiver's IMAP mode follows its site's
	// mail.sent to poll fast while probes are out.
	Watches []string
	// ReadsStream: the service replays the stream with ordered consumers
	// (ephemeral, named by the client library).
	ReadsStream bool
	// Buckets are the KV buckets the service uses.
	Buckets []BucketUse
}

// BucketUse is one KV bucket a Role reads, and writes when Write is set.
type BucketUse struct {
	Bucket string
	Write  bool
}

// Roles lists every service of Email Scout that connects to NATS, in the
// order of docs/architecture.md.
var Roles = []Role{
	{Service: "scheduler", Publishes: []string{SubjectTestScheduled}},
	{Service: "sender", PerSite: true, OwnSiteOnly: true,
		Publishes: []string{SubjectMailSent, SubjectServiceChecked},
		Consumer:  SenderConsumer},
	{Service: "receiver", PerSite: true, Publishes: []string{SubjectMailReturned, SubjectMailBounced},
		Watches: []string{SubjectMailSent}},
	{Service: "evaluator",
		Publishes: []string{SubjectTestScheduled, SubjectCheckTimeout, SubjectCheckResult,
			SubjectIncidentOpen, SubjectIncidentResolved, SubjectMonitorHealth},
		Consumer: func(string) ConsumerDef { return EvaluatorConsumer() },
		Buckets:  []BucketUse{{Bucket: BucketEvaluator, Write: true}, {Bucket: BucketIncidents, Write: true}}},
	{Service: "notifier",
		Publishes: []string{SubjectNotificationSent, SubjectNotificationFailed, SubjectNotificationSuppressed},
		Consumer:  func(string) ConsumerDef { return NotifierConsumer() },
		Buckets:   []BucketUse{{Bucket: BucketNotifications, Write: true}}},
	{Service: "recorder", Consumer: func(string) ConsumerDef { return RecorderConsumer() }},
	{Service: "web", ReadsStream: true,
		Buckets: []BucketUse{{Bucket: BucketEvaluator}, {Bucket: BucketIncidents}}},
}

// RoleOf returns the Role of service (false for an unknown name).
func RoleOf(service string) (Role, bool) {
	for _, r := range Roles {
		if r.Service == service {
			return r, true
		}
	}
	return Role{}, false
}
