package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Connect dials NATS at url as client name and returns the connection and
// its JetStream context. The connection reconnects forever; disconnects and
// reconnects are logged. It fails when the first connection cannot be made
// before ctx ends.
func Connect(ctx context.Context, url, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			log.Warn("nats async error", "error", err)
		}),
	}
	var nc *nats.Conn
	var err error
	for {
		nc, err = nats.Connect(url, opts...)
		if err == nil {
			break
		}
		log.Warn("nats connect failed, retrying", "url", url, "error", err)
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("connect to nats at %s: %w", url, err)
		case <-time.After(time.Second):
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// ProvisionOptions size the stream and buckets.
type ProvisionOptions struct {
	// Replicas of the stream and KV buckets: 1 in dev, 3 in production.
	Replicas int
	// MaxAge of events in the stream; zero means events.DefaultMaxAge.
	MaxAge time.Duration
	// Update rewrites existing definitions (the provisioning job does; a
	// service starting only creates what is missing, so that two services
	// never fight over settings).
	Update bool
}

// StreamConfig is the JetStream form of the events stream definition.
func StreamConfig(o ProvisionOptions) jetstream.StreamConfig {
	maxAge := o.MaxAge
	if maxAge <= 0 {
		maxAge = events.DefaultMaxAge
	}
	return jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "Email Scout events",
		Subjects:    events.StreamSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      maxAge,
		Duplicates:  events.DuplicateWindow,
		Replicas:    max(o.Replicas, 1),
	}
}

// Provision creates (or, with Update, updates) the events stream and every
// KV bucket of events.Buckets. KV buckets allow per-key TTLs (NATS >= 2.11).
func Provision(ctx context.Context, js jetstream.JetStream, o ProvisionOptions) error {
	sc := StreamConfig(o)
	if o.Update {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("provision stream %s: %w", sc.Name, err)
		}
	} else if _, err := js.CreateStream(ctx, sc); err != nil {
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("provision stream %s: %w", sc.Name, err)
		}
		if err := addStreamSubjects(ctx, js, sc); err != nil {
			return err
		}
	}
	for _, b := range events.Buckets {
		kc := jetstream.KeyValueConfig{
			Bucket:         b.Name,
			Description:    b.Description,
			History:        uint8(max(b.History, 1)),
			Replicas:       max(o.Replicas, 1),
			Storage:        jetstream.FileStorage,
			TTL:            b.MaxAge,
			LimitMarkerTTL: time.Minute,
		}
		if o.Update {
			if _, err := js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
				return fmt.Errorf("provision kv %s: %w", b.Name, err)
			}
			continue
		}
		if _, err := js.CreateKeyValue(ctx, kc); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("provision kv %s: %w", b.Name, err)
		}
	}
	return nil
}

// addStreamSubjects adds to the existing stream the subjects of sc it does
// not capture yet (a new event's subject, after an upgrade), and changes
// nothing else: without it, publishing the new event would fail with "no
// responders" until the provisioning job ran.
func addStreamSubjects(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, sc.Name)
	if err != nil {
		return fmt.Errorf("provision stream %s: %w", sc.Name, err)
	}
	cfg := st.CachedInfo().Config
	missing := false
	for _, subj := range sc.Subjects {
		if !slices.Contains(cfg.Subjects, subj) {
			cfg.Subjects = append(cfg.Subjects, subj)
			missing = true
		}
	}
	if !missing {
		return nil
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("provision stream %s: add subjects %v: %w", sc.Name, cfg.Subjects, err)
	}
	return nil
}

// BindConsumer creates or updates the durable consumer def, filtered to
// filterSubjects, on the events stream; the service owns its consumer's
// settings. Services bind through Consumer, whose filter subjects come
// from its Router.
func BindConsumer(ctx context.Context, js jetstream.JetStream, def events.ConsumerDef, filterSubjects []string) (jetstream.Consumer, error) {
	cc := jetstream.ConsumerConfig{
		Durable:        def.Durable,
		FilterSubjects: filterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        def.AckWait,
		MaxAckPending:  def.MaxAckPending,
		MaxDeliver:     def.MaxDeliver,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if def.PriorityGroup != "" {
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PriorityGroups = []string{def.PriorityGroup}
		cc.PinnedTTL = def.PinnedTTL
	}
	c, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, cc)
	if err != nil {
		return nil, fmt.Errorf("bind consumer %s: %w", def.Durable, err)
	}
	return c, nil
}

// Publisher publishes events. It is what services depend on, so that tests
// can count what was published.
type Publisher interface {
	Publish(ctx context.Context, ev events.Event) (duplicate bool, err error)
}

// JetStreamPublisher publishes events as JSON on their subject with their
// Nats-Msg-Id and waits for the stream's acknowledgement.
type JetStreamPublisher struct {
	JS jetstream.JetStream
}

// Publish implements Publisher. duplicate is true when the stream already
// had an event with the same id (within events.DuplicateWindow). An event
// that fails Validate is a permanent error; others are temporary.
func (p JetStreamPublisher) Publish(ctx context.Context, ev events.Event) (bool, error) {
	if err := ev.Validate(); err != nil {
		return false, fault.Permanent(fmt.Errorf("publish %s: %w", ev.Subject(), err))
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return false, fault.Permanent(fmt.Errorf("publish %s: %w", ev.Subject(), err))
	}
	ack, err := p.JS.Publish(ctx, ev.Subject(), data, jetstream.WithMsgID(ev.MsgID()))
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", ev.Subject(), err)
	}
	return ack.Duplicate, nil
}
