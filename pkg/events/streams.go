package events

import "time"

// StreamName is the JetStream stream that holds every event.
const StreamName = "SCOUT"

// StreamSubjects are the subjects StreamName captures.
var StreamSubjects = []string{"test.>", "mail.>", "service.>", "check.>", "incident.>", "notification.>", "monitor.>"}

// Stream defaults. Production overrides MaxAge and Replicas at provisioning.
const (
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. It must
	// exceed the time between two publishers of the same event: scheduler
	// replicas publish one slot within seconds of each other, and an MTA
	// retries a return within minutes.
	DuplicateWindow = 10 * time.Minute
	// DefaultMaxAge keeps events for replay and late consumers.
	DefaultMaxAge = 7 * 24 * time.Hour
)

// KV buckets.
const (
	// BucketEvaluator holds the evaluator's per-attempt and per-site state.
	BucketEvaluator = "scout_evaluator"
	// BucketIncidents holds open incidents, one key per check.
	BucketIncidents = "scout_incidents"
	// BucketNotifications holds notification receipts (one key per incident,
	// transition and contact).
	BucketNotifications = "scout_notifications"
)

// Buckets lists every KV bucket with its purpose, for provisioning.
var Buckets = []BucketDef{
	{Name: BucketEvaluator, Description: "evaluator: attempts in flight with deadlines, site verdicts", History: 1},
	{Name: BucketIncidents, Description: "evaluator: open incidents per check", History: 5},
	{Name: BucketNotifications, Description: "notifier: receipts, one per incident transition and contact", History: 1,
		MaxAge: 90 * 24 * time.Hour},
}

// BucketDef describes a KV bucket.
type BucketDef struct {
	Name        string
	Description string
	History     int
	// MaxAge, when set, expires every key that long after its last write
	// (notification receipts are needed only while their incident lasts).
	MaxAge time.Duration
}

// ConsumerDef describes a durable pull consumer on StreamName. Its filter
// subjects are not here: they are the subject names its service's router
// has handlers for (internal/platform.Router), so that a subscription and
// its handlers cannot disagree.
type ConsumerDef struct {
	Durable string
	// Site, when set, narrows every filter subject to one site
	// ("<name>.<site>.>"): a site's own consumer.
	Site string
	// AckWait is how long a delivered message may stay unacknowledged
	// before JetStream delivers it again.
	AckWait time.Duration
	// MaxAckPending bounds messages in flight to one consumer.
	MaxAckPending int
	// MaxDeliver bounds redeliveries of one message (-1: no bound).
	MaxDeliver int
	// PriorityGroup, when set, pins the consumer to one client at a time
	// (JetStream priority groups, NATS >= 2.11): replicas stand by and take
	// over when the pinned client has not pulled for PinnedTTL.
	PriorityGroup string
	PinnedTTL     time.Duration
}

// SenderConsumer is the consumer of one site's sender: every test scheduled
// for that site.
func SenderConsumer(site string) ConsumerDef {
	return ConsumerDef{
		Durable:       "sender-" + site,
		Site:          site,
		AckWait:       2 * time.Minute,
		MaxAckPending: 256,
		MaxDeliver:    20, // a probe the customer's MX defers is retried until its timeout (about 12 min of redeliveries)
	}
}

// EvaluatorConsumer is the evaluator's consumer: every event that moves an
// attempt or a verdict. It is pinned to one evaluator replica at a time, so
// that verdict state has one writer; pinnedTTL is the failover time
// (SCOUT_EVALUATOR_FAILOVER, positive).
func EvaluatorConsumer(pinnedTTL time.Duration) ConsumerDef {
	return ConsumerDef{
		PriorityGroup: "evaluator",
		PinnedTTL:     pinnedTTL,
		Durable:       "evaluator",
		AckWait:       30 * time.Second,
		MaxAckPending: 1024,
		MaxDeliver:    -1,
	}
}

// NotifierConsumer is the notifier's consumer: incident transitions.
func NotifierConsumer() ConsumerDef {
	return ConsumerDef{
		Durable:       "notifier",
		AckWait:       2 * time.Minute,
		MaxAckPending: 64,
		MaxDeliver:    -1,
	}
}

// RecorderConsumer is the recorder's consumer: everything analysts keep.
func RecorderConsumer() ConsumerDef {
	return ConsumerDef{
		Durable:       "recorder",
		AckWait:       2 * time.Minute,
		MaxAckPending: 10000,
		MaxDeliver:    -1,
	}
}
