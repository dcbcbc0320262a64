package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ConsumerConfig is what a service's durable consumer is: its definition
// (events.*Consumer), its router, and how messages are spread over
// workers.
type ConsumerConfig struct {
	// Def is the durable consumer's definition; its filter subjects are
	// the Router's names (narrowed to Def.Site when set).
	Def    events.ConsumerDef
	Router *Router
	// Workers handle messages in parallel; messages with the same Key go
	// to the same worker, in stream order. Zero means 1.
	Workers int
	// Key spreads messages over workers: KeyByCheck, KeyByMsgID; nil means
	// the subject.
	Key func(jetstream.Msg) string
	// KeepAlive: a handler may outlast Def.AckWait (a service check, an SMS
	// retried with backoff), so JetStream is told every AckWait/3 that the
	// message is still in progress.
	KeepAlive bool
}

// ConsumerDeps are a Consumer's collaborators.
type ConsumerDeps struct {
	JS         jetstream.JetStream
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
	Health     *Health               // nil: no readiness reporting
}

// Consumer is one service's durable JetStream consumer: it binds (retrying
// with backoff while NATS is away), reports readiness as
// "consumer:<durable>", and hands every message to its router on keyed
// workers, acknowledging by the handler's error (Consume).
type Consumer struct {
	cfg     ConsumerConfig
	deps    ConsumerDeps
	filters []string
	log     *slog.Logger
}

// NewConsumer checks cfg: a router without handlers, with two handlers for
// one name, or with names that a site filter cannot narrow is an error.
func NewConsumer(cfg ConsumerConfig, deps ConsumerDeps) (*Consumer, error) {
	if cfg.Router == nil || deps.JS == nil {
		return nil, errors.New("consumer: Router and JS are required")
	}
	if err := cfg.Router.Err(); err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cfg.Def.Durable, err)
	}
	filters, err := cfg.Router.FilterSubjects(cfg.Def.Site)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cfg.Def.Durable, err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Health != nil {
		deps.Health.Set(healthName(cfg.Def), errors.New("not bound yet"))
	}
	return &Consumer{cfg: cfg, deps: deps, filters: filters, log: deps.Logger.With("consumer", cfg.Def.Durable)}, nil
}

// FilterSubjects returns the subjects the consumer is bound to.
func (c *Consumer) FilterSubjects() []string { return append([]string(nil), c.filters...) }

// Run binds the consumer and handles messages until ctx ends. It returns
// nil after ctx ends and in-flight messages are handled.
func (c *Consumer) Run(ctx context.Context) error {
	cons, err := c.Bind(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer c.setHealth(errors.New("stopped"))
	var h Handler = c.cfg.Router.Handle
	if c.cfg.KeepAlive {
		every := c.cfg.Def.AckWait / 3
		h = func(ctx context.Context, msg jetstream.Msg) error {
			defer keepAlive(msg, every)()
			return c.cfg.Router.Handle(ctx, msg)
		}
	}
	return Consume(ctx, cons, h, c.consumeOptions())
}

func (c *Consumer) consumeOptions() ConsumeOptions {
	return ConsumeOptions{
		Name: c.cfg.Def.Durable, Workers: c.cfg.Workers, Key: c.cfg.Key,
		Registerer: c.deps.Registerer, Logger: c.deps.Logger,
		PriorityGroup: c.cfg.Def.PriorityGroup,
	}
}

// RunPartitions is Run for a partitioned definition (Def.Partitions > 0):
// it binds one durable per partition, each filtered to its partition, and
// pulls them all with ConsumePartitions, preferring what pref prefers.
func (c *Consumer) RunPartitions(ctx context.Context, pref Preference) error {
	if c.cfg.Def.Partitions <= 0 {
		return fmt.Errorf("consumer %s: not partitioned", c.cfg.Def.Durable)
	}
	parts := make([]jetstream.Consumer, c.cfg.Def.Partitions)
	for p := range parts {
		filters, err := c.cfg.Router.PartitionFilterSubjects(p)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", c.cfg.Def.Durable, err)
		}
		def := c.cfg.Def
		def.Durable = def.PartitionDurable(p)
		if parts[p], err = c.bind(ctx, def, filters); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	c.setHealth(nil)
	c.log.Info("consumer bound", "partitions", len(parts), "subject_names", c.cfg.Router.Names(), "filter_form", "<name>.*.*.<partition>", "workers", max(c.cfg.Workers, 1))
	defer c.setHealth(errors.New("stopped"))
	return ConsumePartitions(ctx, parts, pref, c.cfg.Router.Handle, c.consumeOptions())
}

// Bind creates or updates the durable consumer with the router's filter
// subjects, retrying with exponential backoff (at most 10 s apart) until it
// works or ctx ends, and then reports the consumer ready. A service that
// pulls by itself (the recorder, which batches) uses Bind and the Router
// without Run.
func (c *Consumer) Bind(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := c.bind(ctx, c.cfg.Def, c.filters)
	if err != nil {
		return nil, err
	}
	c.setHealth(nil)
	c.log.Info("consumer bound", "filter_subjects", c.filters, "workers", max(c.cfg.Workers, 1))
	return cons, nil
}

// bind creates or updates def with filters, retrying with backoff.
func (c *Consumer) bind(ctx context.Context, def events.ConsumerDef, filters []string) (jetstream.Consumer, error) {
	exp := backoff.NewExponentialBackOff()
	exp.MaxInterval = 10 * time.Second
	cons, err := backoff.Retry(ctx, func() (jetstream.Consumer, error) {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cons, err := BindConsumer(bctx, c.deps.JS, def, filters)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("consumer not bound, retrying", "durable", def.Durable, "error", err)
			c.setHealth(err)
		}
		return cons, err
	}, backoff.WithBackOff(exp), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", def.Durable, err)
	}
	return cons, nil
}

func (c *Consumer) setHealth(err error) {
	if c.deps.Health != nil {
		c.deps.Health.Set(healthName(c.cfg.Def), err)
	}
}

func healthName(def events.ConsumerDef) string { return "consumer:" + def.Durable }

// KeyByCheck routes every event of one check to the same worker: the check
// id is the last token of a check-routed subject and of a site- and
// check-routed one as published, the one before the last in the stored
// form (events.PartitionTransform: five tokens).
func KeyByCheck(msg jetstream.Msg) string {
	s := msg.Subject()
	end := len(s)
	if strings.Count(s, ".") == 4 {
		end = strings.LastIndexByte(s, '.')
	}
	return s[strings.LastIndexByte(s[:end], '.')+1 : end]
}

// KeyByMsgID routes a message by its Nats-Msg-Id (events.Event.MsgID), so
// that two deliveries of one event are never handled at once, without
// decoding it.
func KeyByMsgID(msg jetstream.Msg) string {
	if h := msg.Headers(); h != nil {
		if id := h.Get(jetstream.MsgIDHeader); id != "" {
			return id
		}
	}
	return msg.Subject()
}

// keepAlive tells JetStream every period that msg is still being handled
// (AckProgress), so that a long handler is not redelivered meanwhile. It
// uses the real clock: the ack wait runs on the server's. The returned
// function stops it.
func keepAlive(msg jetstream.Msg, period time.Duration) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// stoppingKey carries, in a handler's context, the channel that closes
// when the consumer begins to shut down.
type stoppingKey struct{}

// Stopping returns a channel that is closed when the consumer whose
// handler got ctx begins to shut down. Handlers run with a context that
// shutdown does not cancel, so that work in flight finishes; a handler
// that waits (a backoff before a retry) selects on Stopping to give the
// message back instead. Outside a handler it returns nil (never closed).
func Stopping(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(stoppingKey{}).(<-chan struct{})
	return ch
}

// WithStopping returns ctx with stopping as its Stopping channel: what
// Consume gives its handlers, and what a test gives a handler it calls
// directly.
func WithStopping(ctx context.Context, stopping <-chan struct{}) context.Context {
	return context.WithValue(ctx, stoppingKey{}, stopping)
}
