// Package notifier tells a check's contacts, by SMS, when one of its
// incidents opens and when it resolves.
//
// It consumes incident.open and incident.resolved (events.NotifierConsumer)
// and sends one message per contact and transition, exactly once even when
// events are redelivered or several notifier replicas run:
//
//  1. Before anything is sent, a receipt is created in the KV bucket
//     events.BucketNotifications with compare-and-set (kv.Create): only the
//     replica whose Create succeeds sends; the others find the receipt.
//  2. Every later change is an update at the revision last read: before
//     each provider request (attempt count, lease renewal, "in flight"),
//     after a refusal, and at the end (sent with the provider's message id,
//     or failed).
//  3. A pending receipt whose owner's lease expired (the owner crashed) is
//     taken over and sent, unless a request was in flight without an answer:
//     then the message may or may not have gone out, and it is recorded as
//     failed rather than risk a duplicate SMS.
//
// Temporary refusals (HTTP 429, 5xx, no answer) are retried with
// exponential backoff and jitter (cenkalti/backoff/v5), bounded by
// Config.MaxAttempts and Config.RetryFor; permanent ones (Twilio 21211
// invalid number, 21608 unverified number, ...) are recorded as failed at
// once. Every settled message publishes an events.Notification
// (notification.sent, .failed or .suppressed) for the recorder.
//
// A resolved goes only to the contacts who were sent the open. Incidents
// with Notify=false, warnings of checks without notify_warnings, and
// incidents that open inside one of the check's maintenance windows are
// recorded as suppressed, not sent. The text of each message fits one SMS
// segment (OpenText, ResolvedText). docs/notifications.md describes the
// design for operators.
package notifier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/services/notifier/delivery"
	"github.com/emailscout/emailscout/services/notifier/internal/sms"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Provider delivers messages: internal/twilio (SMS), internal/logsms
// (development: prints them) and internal/webhook (JSON POST).
type Provider interface {
	// Name labels metrics, receipts and events: "twilio", "log", "webhook".
	Name() string
	// Validate reports configuration problems; NewProvider calls it.
	Validate() error
	// Send delivers m and returns the provider's id for it (a Twilio
	// message SID; may be empty). An error should be a *delivery.Error that
	// says whether a retry may succeed; any other error counts as temporary.
	// Send must honour ctx's deadline.
	Send(ctx context.Context, m delivery.Message) (id string, err error)
}

// Deps are the notifier's collaborators.
type Deps struct {
	Checks checks.Source // read per incident: a reload applies from the next one
	// JS binds the consumer and opens the receipts bucket.
	JS jetstream.JetStream
	// Publisher publishes notification events; nil means
	// platform.JetStreamPublisher on JS.
	Publisher platform.Publisher
	Provider  Provider
	// Clock times backoffs, leases and the open wait; nil: the real clock.
	Clock clockwork.Clock
	// ReplicaID names this replica in receipts (the pod name); empty: a
	// random id.
	ReplicaID  string
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
	// Health, when set, reports the consumer's readiness.
	Health *platform.Health
}

// Notifier sends the messages of incident transitions.
type Notifier struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics metrics
	store   receipts
	router  *platform.Router // incident.open and incident.resolved
}

type metrics struct {
	messages *prometheus.CounterVec
	send     *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// errBusy is a temporary condition: another replica holds the receipt, or
// the open of a resolved is still being handled. The event is redelivered.
var errBusy = errors.New("busy")

// New checks cfg and deps and returns a Notifier. Zero fields of cfg take
// their defaults (see Config).
func New(cfg Config, deps Deps) (*Notifier, error) {
	platform.FillDefaults(&cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Checks == nil || deps.JS == nil || deps.Provider == nil {
		return nil, errors.New("notifier: Checks, JS and Provider are required")
	}
	if deps.Publisher == nil {
		deps.Publisher = platform.JetStreamPublisher{JS: deps.JS}
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.ReplicaID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		deps.ReplicaID = "notifier-" + hex.EncodeToString(b[:])
	}
	m := metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_notifier_messages_total",
			Help: "Messages settled by this replica, by provider and outcome (sent, failed, suppressed).",
		}, []string{"provider", "outcome"}),
		send: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scout_notifier_send_seconds",
			Help:    "Duration of one provider request, by provider and result (ok, temporary, permanent).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
		}, []string{"provider", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_notifier_retries_total",
			Help: "Provider requests retried after a temporary error, by provider.",
		}, []string{"provider"}),
	}
	// Every outcome of this replica's provider exists at 0 from the start:
	// the first failed SMS after a restart is then an increase() that the
	// alert ScoutNotificationsFailing sees (deploy/prometheus/alerts_test.yaml).
	for _, outcome := range []string{events.NotifySent, events.NotifyFailed, events.NotifySuppressed} {
		m.messages.WithLabelValues(deps.Provider.Name(), outcome)
	}
	m.retries.WithLabelValues(deps.Provider.Name())
	if err := platform.Register(deps.Registerer, m.messages, m.send, m.retries); err != nil {
		return nil, fmt.Errorf("notifier: metrics: %w", err)
	}
	n := &Notifier{
		cfg: cfg, deps: deps, metrics: m,
		log: deps.Logger.With("component", "notifier", "provider", deps.Provider.Name(), "replica", deps.ReplicaID),
	}
	n.router = n.newRouter()
	return n, nil
}

// newRouter routes incident transitions to their handlers.
func (n *Notifier) newRouter() *platform.Router {
	r := platform.NewRouter()
	platform.On(r, n.onOpen)
	platform.On(r, n.onResolved)
	return r
}

// Consumes returns the subject names the notifier consumes (its router's),
// for the contract tests of test/contract.
func Consumes() []string { return (&Notifier{}).newRouter().Names() }

// Run binds the notifier consumer and handles incident transitions until
// ctx ends. A message waiting for a retry when ctx ends gives its receipt
// back (another replica takes over at once) and its event is redelivered.
func (n *Notifier) Run(ctx context.Context) error {
	if err := n.openStore(ctx); err != nil {
		return err
	}
	cons, err := platform.NewConsumer(platform.ConsumerConfig{
		Def: events.NotifierConsumer(), Router: n.router, Workers: n.cfg.Workers,
		// Transitions of one check go to one worker, in stream order.
		Key: platform.KeyByCheck,
		// Ack wait is real time on the server: keep the message ours while
		// retries run.
		KeepAlive: true,
	}, platform.ConsumerDeps{JS: n.deps.JS, Logger: n.log, Registerer: n.deps.Registerer, Health: n.deps.Health})
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	n.log.Info("notifier running", "checks", len(n.deps.Checks.Current().Checks))
	return cons.Run(ctx)
}

// openStore opens the receipts bucket.
func (n *Notifier) openStore(ctx context.Context) error {
	kv, err := n.deps.JS.KeyValue(ctx, events.BucketNotifications)
	if err != nil {
		return fmt.Errorf("notifier: receipts bucket %s: %w", events.BucketNotifications, err)
	}
	n.store = receipts{kv: kv}
	return nil
}

// job is one message to one contact.
type job struct {
	key     string
	receipt Receipt // as created: pending, or suppressed
	msg     delivery.Message
}

func (n *Notifier) newJob(ev incident, transition string, c checks.Contact, text, suppressed string) job {
	now := n.deps.Clock.Now()
	r := Receipt{
		V: 1, IncidentID: ev.id, CheckID: ev.checkID, Customer: ev.customer, Transition: transition,
		Contact: c.Name, Phone: c.Phone, State: StatePending, Provider: n.deps.Provider.Name(),
		Text: text, Segments: sms.Analyze(text).Segments, CreatedAt: now, UpdatedAt: now,
	}
	if suppressed != "" {
		r.State, r.Reason = events.NotifySuppressed, suppressed
	} else {
		r.Owner, r.LeaseUntil = n.deps.ReplicaID, now.Add(n.cfg.Lease)
	}
	return job{
		key:     ReceiptKey(ev.checkID, ev.id, transition, c.Phone),
		receipt: r,
		msg: delivery.Message{
			To: c.Phone, Contact: c.Name, Text: text, IncidentID: ev.id, CheckID: ev.checkID, CheckName: ev.name,
			Customer: ev.customer, Transition: transition, Severity: ev.severity,
			Key: ev.id + ":" + transition + ":" + strings.TrimPrefix(c.Phone, "+"),
		},
	}
}

// incident is what open and resolved events share.
type incident struct {
	id, checkID, name, customer, severity string
}

func (n *Notifier) onOpen(ctx context.Context, ev *events.IncidentOpen) error {
	check := n.deps.Checks.Current().Lookup(ev.CheckID)
	if check == nil {
		return fault.Permanent(fmt.Errorf("incident %s: check %q is not in the check file: nobody to notify", ev.IncidentID, ev.CheckID))
	}
	inc := incident{id: ev.IncidentID, checkID: ev.CheckID, name: check.Name, customer: ev.Customer, severity: ev.Severity}
	suppressed := ""
	switch {
	case !ev.Notify:
		suppressed = "notify is false"
		if ev.Silenced != "" {
			suppressed += ": " + ev.Silenced
		}
	case ev.Severity == events.SeverityWarning && !check.NotifyWarnings:
		suppressed = "warning incident and the check's notify_warnings is off"
	default:
		if w, ok := check.MaintenanceAt(ev.OpenedAt); ok {
			suppressed = "opened inside " + w.String()
		}
	}
	text := OpenText(*ev, check.Name)
	var jobs []job
	seen := map[string]bool{}
	for _, c := range check.Contacts {
		if seen[c.Phone] {
			continue
		}
		seen[c.Phone] = true
		jobs = append(jobs, n.newJob(inc, TransitionOpen, c, text, suppressed))
	}
	if len(jobs) == 0 {
		n.log.Info("incident opened; the check has no contacts", "incident", ev.IncidentID, "check", ev.CheckID)
	}
	return n.runJobs(ctx, jobs)
}

func (n *Notifier) onResolved(ctx context.Context, ev *events.IncidentResolved) error {
	opens, err := n.store.list(ctx, ev.CheckID, ev.IncidentID, TransitionOpen)
	if err != nil {
		return err
	}
	check := n.deps.Checks.Current().Lookup(ev.CheckID)
	name := ev.CheckName
	if check != nil {
		name = check.Name
	}
	if name == "" {
		name = ev.CheckID
	}
	inc := incident{id: ev.IncidentID, checkID: ev.CheckID, name: name, customer: ev.Customer, severity: ev.Severity}
	text := ResolvedText(*ev, name)
	var jobs []job
	var errs []error
	if len(opens) == 0 {
		if check == nil || len(check.Contacts) == 0 {
			n.log.Info("incident resolved; nobody was told of its open", "incident", ev.IncidentID, "check", ev.CheckID)
			return nil
		}
		// The open may not have been handled yet (events can come in any
		// order); wait for it, but not forever.
		if waited := n.deps.Clock.Since(ev.ResolvedAt); waited < n.cfg.OpenWait {
			return fmt.Errorf("%w: resolved incident %s has no open receipt yet; waiting for the open (%v of %v)", errBusy, ev.IncidentID, waited.Round(time.Second), n.cfg.OpenWait)
		}
		seen := map[string]bool{}
		for _, c := range check.Contacts {
			if !seen[c.Phone] {
				seen[c.Phone] = true
				jobs = append(jobs, n.newJob(inc, TransitionResolved, c, text, "no open was sent for this incident"))
			}
		}
	}
	for _, o := range opens {
		c := checks.Contact{Name: o.Contact, Phone: o.Phone}
		switch o.State {
		case events.NotifySent:
			jobs = append(jobs, n.newJob(inc, TransitionResolved, c, text, ""))
		case events.NotifyFailed:
			jobs = append(jobs, n.newJob(inc, TransitionResolved, c, text, "the open was not delivered: "+o.Error))
		case events.NotifySuppressed:
			jobs = append(jobs, n.newJob(inc, TransitionResolved, c, text, "the open was suppressed: "+o.Reason))
		default:
			errs = append(errs, fmt.Errorf("%w: the open to %s of incident %s is still being sent", errBusy, o.Contact, ev.IncidentID))
		}
	}
	errs = append(errs, n.runJobs(ctx, jobs))
	return errors.Join(errs...)
}

// runJobs delivers the jobs in parallel (one goroutine per contact) and
// joins their errors.
func (n *Notifier) runJobs(ctx context.Context, jobs []job) error {
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() { errs[i] = n.deliver(ctx, j) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deliver settles one job: it claims the receipt (or finds it), then sends,
// records or republishes.
func (n *Notifier) deliver(ctx context.Context, j job) error {
	log := n.log.With("key", j.key, "incident", j.receipt.IncidentID, "transition", j.receipt.Transition, "contact", j.receipt.Contact)
	r := j.receipt
	if r.Transition == TransitionOpen && r.State == StatePending {
		// An open handled after its resolved must not page anyone.
		rkey := ReceiptKey(r.CheckID, r.IncidentID, TransitionResolved, r.Phone)
		if _, _, found, err := n.store.get(ctx, rkey); err != nil {
			return err
		} else if found {
			r.State, r.Reason, r.Owner, r.LeaseUntil = events.NotifySuppressed, "the incident was resolved before its open was handled", "", time.Time{}
		}
	}
	rev, err := n.store.create(ctx, j.key, r)
	switch {
	case err == nil:
	case errors.Is(err, errExists):
		cur, curRev, ok, err := n.store.get(ctx, j.key)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: receipt %s vanished; retrying", errBusy, j.key)
		}
		if cur.Final() {
			// Settled before (a redelivery, or another replica): make sure
			// the event is out; JetStream drops the duplicate.
			log.Debug("receipt already settled", "state", cur.State)
			return n.publish(ctx, cur)
		}
		now := n.deps.Clock.Now()
		if now.Before(cur.LeaseUntil) {
			return fmt.Errorf("%w: receipt %s is held by %s until %s", errBusy, j.key, cur.Owner, cur.LeaseUntil.UTC().Format(time.RFC3339))
		}
		if cur.InFlight {
			cur.State, cur.InFlight, cur.UpdatedAt = events.NotifyFailed, false, now
			cur.Error = fmt.Sprintf("outcome unknown: %s stopped while request %d to %s was unanswered; not resent, to avoid a duplicate message", cur.Owner, cur.Attempts, cur.Provider)
			cur.Owner = n.deps.ReplicaID
			if _, err := n.store.update(ctx, j.key, cur, curRev); err != nil {
				return fmt.Errorf("%w: settle abandoned receipt %s: %w", errBusy, j.key, err)
			}
			log.Error("abandoned message recorded as failed: its outcome is unknown", "attempts", cur.Attempts)
			n.metrics.messages.WithLabelValues(cur.Provider, events.NotifyFailed).Inc()
			return n.publish(ctx, cur)
		}
		log.Warn("taking over a pending message whose owner's lease expired", "owner", cur.Owner, "attempts", cur.Attempts)
		cur.Owner, cur.LeaseUntil, cur.UpdatedAt = n.deps.ReplicaID, now.Add(n.cfg.Lease), now
		cur.Provider = n.deps.Provider.Name()
		if rev, err = n.store.update(ctx, j.key, cur, curRev); err != nil {
			return fmt.Errorf("%w: take over receipt %s: %w", errBusy, j.key, err)
		}
		r = cur
		j.msg.Text = cur.Text
	default:
		return err
	}
	if r.State == events.NotifySuppressed {
		log.Info("message suppressed", "reason", r.Reason)
		n.metrics.messages.WithLabelValues(n.deps.Provider.Name(), events.NotifySuppressed).Inc()
		return n.publish(ctx, r)
	}
	return n.send(ctx, log, j, r, rev)
}

// send makes the provider requests of a receipt this replica holds at rev.
func (n *Notifier) send(ctx context.Context, log *slog.Logger, j job, r Receipt, rev uint64) error {
	provider := n.deps.Provider.Name()
	b := &backoff.ExponentialBackOff{
		InitialInterval: n.cfg.RetryInitial, RandomizationFactor: 0.5, Multiplier: 3, MaxInterval: n.cfg.RetryMax,
	}
	b.Reset()
	first := n.deps.Clock.Now()
	for {
		// Record the attempt before making it: after a crash, a request
		// that may have gone out is never repeated.
		now := n.deps.Clock.Now()
		r.Attempts++
		r.InFlight, r.Owner, r.LeaseUntil, r.UpdatedAt = true, n.deps.ReplicaID, now.Add(n.cfg.Lease), now
		var err error
		if rev, err = n.store.update(ctx, j.key, r, rev); err != nil {
			if errors.Is(err, errLost) {
				log.Warn("lost the receipt to another replica before sending; not sending")
				return nil
			}
			return err
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.SendTimeout)
		start := time.Now()
		id, err := n.deps.Provider.Send(sctx, j.msg)
		cancel()
		result := "ok"
		switch {
		case err == nil:
		case fault.MarkedPermanent(err):
			result = "permanent"
		default:
			result = "temporary" // an unmarked error too: the retry budget bounds it
		}
		n.metrics.send.WithLabelValues(provider, result).Observe(time.Since(start).Seconds())
		if err == nil {
			r.State, r.ProviderID, r.InFlight, r.Error = events.NotifySent, id, false, ""
			log.Info("message sent", "provider_id", id, "attempts", r.Attempts)
			return n.settle(ctx, log, j.key, r, rev)
		}
		r.Error = err.Error()
		next := b.NextBackOff()
		if ra := delivery.RetryAfterOf(err); ra > next {
			next = min(ra, n.cfg.RetryMax)
		}
		giveUp := ""
		switch {
		case result == "permanent":
			giveUp = "permanent error"
		case r.Attempts >= n.cfg.MaxAttempts:
			giveUp = fmt.Sprintf("%d attempts", r.Attempts)
		case n.deps.Clock.Since(first)+next > n.cfg.RetryFor:
			giveUp = fmt.Sprintf("retrying longer than %v", n.cfg.RetryFor)
		}
		if giveUp != "" {
			r.State, r.InFlight = events.NotifyFailed, false
			log.Error("message failed", "after", giveUp, "attempts", r.Attempts, "error", err)
			return n.settle(ctx, log, j.key, r, rev)
		}
		if delivery.Answered(err) {
			r.InFlight = false // refused: certainly not sent
		}
		r.UpdatedAt = n.deps.Clock.Now()
		if rev, err = n.store.update(ctx, j.key, r, rev); err != nil {
			if errors.Is(err, errLost) {
				log.Warn("lost the receipt to another replica while retrying; stopping")
				return nil
			}
			return err
		}
		n.metrics.retries.WithLabelValues(provider).Inc()
		log.Warn("temporary error, retrying", "attempt", r.Attempts, "in", next.String(), "error", r.Error)
		if err := n.wait(ctx, next); err != nil {
			// Shutting down: give the receipt back so that another replica
			// takes over without waiting for the lease.
			r.LeaseUntil = n.deps.Clock.Now()
			if _, uerr := n.store.update(context.WithoutCancel(ctx), j.key, r, rev); uerr != nil {
				log.Warn("could not release the receipt", "error", uerr)
			}
			return fmt.Errorf("notifier stopping during the backoff of %s: %w", j.key, err)
		}
	}
}

// wait sleeps d on the injected clock, or until the consumer begins to
// shut down (platform.Stopping): then it returns errStopping.
func (n *Notifier) wait(ctx context.Context, d time.Duration) error {
	t := n.deps.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return nil
	case <-platform.Stopping(ctx):
		return errStopping
	}
}

// errStopping ends a backoff wait when the notifier shuts down; the event
// is redelivered (to another replica, or to this one after its restart).
var errStopping = errors.New("notifier stopping")

// settle writes the final state of a receipt held at rev, counts it and
// publishes its event. The KV write is tried three times; if it still
// fails the event is published anyway (the recorder learns the truth) and
// the error is returned, so the event is redelivered.
func (n *Notifier) settle(ctx context.Context, log *slog.Logger, key string, r Receipt, rev uint64) error {
	r.UpdatedAt = n.deps.Clock.Now()
	var err error
	for range 3 {
		if _, err = n.store.update(ctx, key, r, rev); err == nil || errors.Is(err, errLost) {
			break
		}
	}
	n.metrics.messages.WithLabelValues(r.Provider, r.State).Inc()
	perr := n.publish(ctx, r)
	switch {
	case errors.Is(err, errLost):
		log.Error("the receipt was taken over while this replica was sending", "state", r.State)
		return perr
	case err != nil:
		return errors.Join(fmt.Errorf("settle receipt %s: %w", key, err), perr)
	}
	return perr
}

// publish sends the notification event of a settled receipt.
func (n *Notifier) publish(ctx context.Context, r Receipt) error {
	ev := events.Notification{
		V: events.SchemaVersion, IncidentID: r.IncidentID, CheckID: r.CheckID, Customer: r.Customer,
		Transition: r.Transition, Contact: r.Contact, Address: r.Phone, Provider: r.Provider,
		Outcome: r.State, ProviderID: r.ProviderID, Attempts: r.Attempts, Error: r.Error, Reason: r.Reason,
		Text: r.Text, Segments: r.Segments, At: r.UpdatedAt,
	}
	if _, err := n.deps.Publisher.Publish(ctx, ev); err != nil {
		return fmt.Errorf("publish %s: %w", ev.Subject(), err)
	}
	return nil
}
