package platform

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Handler processes one message. Its error decides the acknowledgement:
// nil acks, an error marked permanent (fault.MarkedPermanent: a malformed
// event, a check that no longer exists) terminates, any other error asks
// for redelivery after a delay.
type Handler func(ctx context.Context, msg jetstream.Msg) error

// ConsumeOptions tune Consume.
type ConsumeOptions struct {
	// Name labels logs and metrics (usually the durable name).
	Name string
	// Workers handle messages in parallel; messages with the same Key go
	// to the same worker, in order. Zero means 1.
	Workers int
	// Key partitions messages; nil means the subject.
	Key func(jetstream.Msg) string
	// Registerer receives scout_consumer_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// MaxNakDelay caps the redelivery delay; zero means one minute.
	MaxNakDelay time.Duration
	// PriorityGroup repeats a partitioned consumer definition's
	// (events.ConsumerDef.PriorityGroup), for ConsumePartitions.
	PriorityGroup string
}

type consumeMetrics struct {
	handled  *prometheus.CounterVec
	duration prometheus.Histogram
}

func newConsumeMetrics(reg prometheus.Registerer, name string) (*consumeMetrics, error) {
	m := &consumeMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "scout_consumer_messages_total",
			Help:        "Messages handled by a JetStream consumer, by outcome (ack, nak, term).",
			ConstLabels: prometheus.Labels{"consumer": name},
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "scout_consumer_handle_seconds",
			Help:        "Time to handle one message.",
			ConstLabels: prometheus.Labels{"consumer": name},
			Buckets:     prometheus.ExponentialBuckets(0.0005, 4, 9),
		}),
	}
	// Every outcome exists at 0 from the start, so that the first nak or
	// term after a restart is an increase() the alerts see (a series born
	// at 1 has no increase; deploy/prometheus/alerts_test.yaml).
	for _, outcome := range []string{"ack", "nak", "term"} {
		m.handled.WithLabelValues(outcome)
	}
	if err := Register(reg, m.handled, m.duration); err != nil {
		return nil, fmt.Errorf("consumer %s: metrics: %w", name, err)
	}
	return m, nil
}

// Consume pulls from cons until ctx ends, hands each message to h and acks
// it according to h's error. Handlers get a context that ctx's end does
// not cancel (see Stopping). It returns nil after ctx ends and in-flight
// messages are handled; an error only if the pull cannot start. Services
// use it through Consumer.
func Consume(ctx context.Context, cons jetstream.Consumer, h Handler, o ConsumeOptions) error {
	w, err := startWorkers(ctx, h, o)
	if err != nil {
		return err
	}
	defer w.stop()
	iter, err := cons.Messages(jetstream.PullMaxMessages(max(64, 4*w.n)))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	w.feed(ctx, iter)
	return nil
}

// Preference says which partitions of a partitioned consumer this replica
// pulls first (Members implements it).
type Preference interface {
	// Preferred reports whether partition p is this replica's.
	Preferred(p int) bool
	// Changed returns a channel that is closed when Preferred's answers
	// may have changed.
	Changed() <-chan struct{}
	// Ready returns a channel that is closed once Preferred answers (the
	// first view of the owners).
	Ready() <-chan struct{}
}

// ConsumePartitions is Consume for a partitioned consumer: parts[p] is
// partition p's durable consumer (events.ConsumerDef.Durables, with the
// "prioritized" priority policy and group o.PriorityGroup). It pulls every
// partition, at priority 0 those pref prefers and at priority 1 the
// others, so that JetStream delivers a partition's messages to the replica
// that prefers it while that replica has a pull waiting, and to the others
// otherwise (at once when its connection is gone). It starts pulling once
// pref is ready, not at priority 1 and again a moment later. When pref changes, each
// partition whose priority changed drains its pull (the messages already
// delivered are handled) and pulls again at its new priority. All
// partitions share one pool of o.Workers keyed workers.
func ConsumePartitions(ctx context.Context, parts []jetstream.Consumer, pref Preference, h Handler, o ConsumeOptions) error {
	if o.PriorityGroup == "" {
		return errors.New("consume: a partitioned consumer needs a priority group")
	}
	select {
	case <-pref.Ready():
	case <-ctx.Done():
		return nil
	}
	w, err := startWorkers(ctx, h, o)
	if err != nil {
		return err
	}
	defer w.stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for p, cons := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.feedPartition(ctx, cons, p, pref, o.PriorityGroup); err != nil {
				cancel(fmt.Errorf("partition %d: %w", p, err))
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// feedPartition pulls partition p at the priority pref gives it, again
// after every change, until ctx ends.
func (w *workers) feedPartition(ctx context.Context, cons jetstream.Consumer, p int, pref Preference, group string) error {
	for ctx.Err() == nil {
		changed := pref.Changed()
		preferred := pref.Preferred(p)
		priority := 1
		if preferred {
			priority = 0
		}
		iter, err := cons.Messages(jetstream.PullMaxMessages(partitionBatch), jetstream.PullPriorityGroup(group),
			jetstream.PullPrioritized(priority), jetstream.PullExpiry(30*time.Second))
		if err != nil {
			return err
		}
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-ctx.Done():
				case <-done:
					return
				case <-changed:
					// The next change's channel is taken before p is
					// looked at, so that a change in between is not missed.
					next := pref.Changed()
					if pref.Preferred(p) == preferred {
						changed = next
						continue
					}
				}
				iter.Drain()
				return
			}
		}()
		w.feed(ctx, iter)
		close(done)
	}
	return nil
}

// partitionBatch is how many messages one partition's pull asks for: the
// iterator asks again when half are delivered, so a preferred replica
// almost always has a pull waiting.
const partitionBatch = 32

// workers is Consume's pool: messages with the same key go to the same
// worker, in order.
type workers struct {
	n      int
	key    func(jetstream.Msg) string
	log    *slog.Logger
	queues []chan jetstream.Msg
	wg     sync.WaitGroup
}

func startWorkers(ctx context.Context, h Handler, o ConsumeOptions) (*workers, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("consumer", o.Name)
	maxDelay := o.MaxNakDelay
	if maxDelay <= 0 {
		maxDelay = time.Minute
	}
	m, err := newConsumeMetrics(o.Registerer, o.Name)
	if err != nil {
		return nil, err
	}
	w := &workers{n: max(o.Workers, 1), key: o.Key, log: log}
	// Handlers finish what they started: shutdown does not cancel their
	// context, it closes Stopping(hctx).
	hctx := WithStopping(context.WithoutCancel(ctx), ctx.Done())
	w.queues = make([]chan jetstream.Msg, w.n)
	for i := range w.queues {
		w.queues[i] = make(chan jetstream.Msg, 16)
		w.wg.Add(1)
		go func(q chan jetstream.Msg) {
			defer w.wg.Done()
			for msg := range q {
				handleOne(hctx, msg, h, m, log, maxDelay)
			}
		}(w.queues[i])
	}
	return w, nil
}

// stop lets the workers finish what is queued and waits for them.
func (w *workers) stop() {
	for _, q := range w.queues {
		close(q)
	}
	w.wg.Wait()
}

// feed hands iter's messages to the workers until iter is closed (drained
// when ctx ends). A failed pull is retried after half a second.
func (w *workers) feed(ctx context.Context, iter jetstream.MessagesContext) {
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return
			}
			w.log.Warn("pull failed, retrying", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		key := msg.Subject()
		if w.key != nil {
			key = w.key(msg)
		}
		w.queues[shard(key, w.n)] <- msg
	}
}

func handleOne(ctx context.Context, msg jetstream.Msg, h Handler, m *consumeMetrics, log *slog.Logger, maxDelay time.Duration) {
	start := time.Now()
	err := h(ctx, msg)
	m.duration.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		m.handled.WithLabelValues("ack").Inc()
		if aerr := msg.Ack(); aerr != nil {
			log.Warn("ack failed; the message will be redelivered", "subject", msg.Subject(), "error", aerr)
		}
	case fault.MarkedPermanent(err):
		m.handled.WithLabelValues("term").Inc()
		log.Error("message terminated: it can never be handled", "subject", msg.Subject(), "error", err)
		_ = msg.TermWithReason(truncate(err.Error(), 200))
	default:
		m.handled.WithLabelValues("nak").Inc()
		delivered := uint64(1)
		if md, merr := msg.Metadata(); merr == nil {
			delivered = md.NumDelivered
		}
		delay := NakDelay(delivered, maxDelay)
		log.Warn("message handling failed, redelivering later", "subject", msg.Subject(), "delivered", delivered, "delay", delay.String(), "error", err)
		_ = msg.NakWithDelay(delay)
	}
}

// NakDelay is the redelivery delay after the n-th failed delivery: 250 ms
// doubling per delivery, capped at maxDelay, with up to 20% jitter so that
// a backlog does not return all at once.
func NakDelay(n uint64, maxDelay time.Duration) time.Duration {
	d := 250 * time.Millisecond
	for i := uint64(1); i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

func shard(key string, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
