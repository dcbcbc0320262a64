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
	// PriorityGroup and PinnedTTL repeat the consumer definition's, for a
	// pinned consumer (events.ConsumerDef.PriorityGroup).
	PriorityGroup string
	PinnedTTL     time.Duration
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
	workers := max(o.Workers, 1)
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
		return err
	}
	pullOpts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(max(64, 4*workers))}
	if o.PriorityGroup != "" {
		// Pull often enough that the pin does not lapse while we are alive.
		expiry := min(30*time.Second, max(o.PinnedTTL/2, time.Second))
		pullOpts = append(pullOpts, jetstream.PullPriorityGroup(o.PriorityGroup), jetstream.PullExpiry(expiry))
	}
	iter, err := cons.Messages(pullOpts...)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()

	// Handlers finish what they started: shutdown does not cancel their
	// context, it closes Stopping(hctx).
	hctx := WithStopping(context.WithoutCancel(ctx), ctx.Done())
	queues := make([]chan jetstream.Msg, workers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan jetstream.Msg, 16)
		wg.Add(1)
		go func(q chan jetstream.Msg) {
			defer wg.Done()
			for msg := range q {
				handleOne(hctx, msg, h, m, log, maxDelay)
			}
		}(queues[i])
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			log.Warn("pull failed, retrying", "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		key := msg.Subject()
		if o.Key != nil {
			key = o.Key(msg)
		}
		queues[shard(key, workers)] <- msg
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
