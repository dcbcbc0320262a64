package events

import (
	"fmt"
	"time"
)

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
	// Partitions, when set, makes the definition one durable consumer
	// per check partition (Durables), each filtered to its partition
	// (PartitionFilter) and shared by the service's replicas through the
	// priority group PriorityGroup with the "prioritized" policy (NATS >=
	// 2.12): a replica pulls its own partitions at priority 0 and every
	// other at priority 1, so that a partition's events go to its replica
	// while it pulls and to the others at once when it does not.
	Partitions    int
	PriorityGroup string
}

// Durables returns the durable consumer names of def: Durable, or one
// "<Durable>-p<NN>" per partition when def is partitioned.
func (def ConsumerDef) Durables() []string {
	if def.Partitions <= 0 {
		return []string{def.Durable}
	}
	out := make([]string, def.Partitions)
	for p := range out {
		out[p] = def.PartitionDurable(p)
	}
	return out
}

// PartitionDurable returns the durable consumer name of partition p.
func (def ConsumerDef) PartitionDurable(p int) string {
	return fmt.Sprintf("%s-p%02d", def.Durable, p)
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
// attempt or a verdict, one durable per check partition, so that replicas
// divide the checks and each check's verdict state has one writer while
// its replica is alive.
func EvaluatorConsumer() ConsumerDef {
	return ConsumerDef{
		Partitions:    Partitions,
		PriorityGroup: "evaluator",
		Durable:       "evaluator",
		AckWait:       30 * time.Second,
		MaxAckPending: 256, // per partition
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
