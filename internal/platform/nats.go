package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSAuth is who a service is to NATS and how it checks the server: its
// own user's credentials (an NKey seed file or a JWT credentials file),
// TLS with a CA file and an optional client certificate, and the
// JetStream domain of a hub reached through a leaf node. All empty (scout
// dev, tests): no credentials, TLS only when the URL says tls://.
// docs/configuration.md ("NATS credentials and TLS") documents the
// variables; pkg/natsauth derives each user's permissions.
type NATSAuth struct {
	// CredsFile is a .creds file: the user's JWT and NKey seed
	// (operator/JWT deployments, nsc; nats.UserCredentials).
	CredsFile string `env:"SCOUT_NATS_CREDS_FILE"`
	// NKeyFile holds the user's NKey seed ("SU...", nsc or
	// `nk -gen user`; nats.NkeyOptionFromSeed); the server knows its
	// public key (scout nats-config).
	NKeyFile string `env:"SCOUT_NATS_NKEY_FILE"`
	// CAFile is the PEM CA bundle that verifies the server's certificate;
	// setting it turns TLS on (nats.RootCAs).
	CAFile string `env:"SCOUT_NATS_TLS_CA"`
	// CertFile and KeyFile are a PEM client certificate and key, for
	// servers that verify clients (nats.ClientCert); both or neither.
	CertFile string `env:"SCOUT_NATS_TLS_CERT"`
	KeyFile  string `env:"SCOUT_NATS_TLS_KEY"`
	// JSDomain is the JetStream domain of the hub, for a site whose NATS is
	// a leaf node without JetStream of its own (jetstream.NewWithDomain).
	JSDomain string `env:"SCOUT_NATS_JS_DOMAIN"`
}

// Options checks the files of a and returns the nats.go options that use
// them. Every error names the variable and the file, never a secret: both
// SCOUT_NATS_CREDS_FILE and SCOUT_NATS_NKEY_FILE set, a file that cannot be
// read or holds no seed, JWT or certificate, a certificate without its key.
func (a NATSAuth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.CredsFile != "" && a.NKeyFile != "" {
		return nil, errors.New("nats: set SCOUT_NATS_CREDS_FILE or SCOUT_NATS_NKEY_FILE, not both")
	}
	if a.CredsFile != "" {
		data, err := os.ReadFile(a.CredsFile)
		if err != nil {
			return nil, fmt.Errorf("SCOUT_NATS_CREDS_FILE=%s: %w", a.CredsFile, err)
		}
		// ParseDecoratedJWT returns the whole file when it finds no JWT
		// block: decoding the claims is what tells a user JWT.
		token, err := jwt.ParseDecoratedJWT(data)
		if err == nil {
			_, err = jwt.DecodeUserClaims(token)
		}
		if err != nil {
			return nil, fmt.Errorf("SCOUT_NATS_CREDS_FILE=%s: no user JWT in it: %w", a.CredsFile, err)
		}
		kp, err := jwt.ParseDecoratedNKey(data)
		if err != nil {
			return nil, fmt.Errorf("SCOUT_NATS_CREDS_FILE=%s: no user NKey seed in it: %w", a.CredsFile, err)
		}
		kp.Wipe()
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("SCOUT_NATS_NKEY_FILE=%s: %w", a.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return nil, errors.New("nats: SCOUT_NATS_TLS_CERT and SCOUT_NATS_TLS_KEY go together")
	}
	type fileOption struct {
		vars string // the variables and files, for errors
		opt  nats.Option
	}
	var tlsOpts []fileOption
	if a.CAFile != "" {
		tlsOpts = append(tlsOpts, fileOption{"SCOUT_NATS_TLS_CA=" + a.CAFile, nats.RootCAs(a.CAFile)})
	}
	if a.CertFile != "" {
		tlsOpts = append(tlsOpts, fileOption{"SCOUT_NATS_TLS_CERT=" + a.CertFile + ", SCOUT_NATS_TLS_KEY=" + a.KeyFile,
			nats.ClientCert(a.CertFile, a.KeyFile)})
	}
	// nats.go loads these files when the options are applied: apply them
	// once here, so that a bad file is an error naming it rather than a
	// connection retried forever.
	probe := nats.GetDefaultOptions()
	for _, o := range tlsOpts {
		if err := o.opt(&probe); err != nil {
			return nil, fmt.Errorf("%s: %w", o.vars, err)
		}
		opts = append(opts, o.opt)
	}
	return opts, nil
}

// Connect dials NATS at url as client name, authenticated and with TLS as
// auth says, and returns the connection and its JetStream context (in
// auth.JSDomain when set). The connection reconnects forever; disconnects
// and reconnects are logged, with any password in url redacted. It fails
// at once when auth's files are unusable (NATSAuth.Options), and when the
// first connection cannot be made before ctx ends (a refused user is
// retried too: the server's configuration may be reloaded meanwhile).
func Connect(ctx context.Context, url, name string, auth NATSAuth, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	authOpts, err := auth.Options()
	if err != nil {
		return nil, nil, err
	}
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
	opts = append(opts, authOpts...)
	shown := RedactURLs(url)
	var nc *nats.Conn
	for {
		nc, err = nats.Connect(url, opts...)
		if err == nil {
			break
		}
		log.Warn("nats connect failed, retrying", "url", shown, "error", err)
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("connect to nats at %s: %w", shown, err)
		case <-time.After(time.Second):
		}
	}
	var js jetstream.JetStream
	if auth.JSDomain != "" {
		js, err = jetstream.NewWithDomain(nc, auth.JSDomain)
	} else {
		js, err = jetstream.New(nc)
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// RedactURLs returns a comma-separated list of NATS URLs with every
// password replaced by "xxxxx" (url.URL.Redacted), for logs and errors.
// A part that does not parse is shown as "<unparsable url>".
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := neturl.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "<unparsable url>"
			continue
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
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
		Name:             events.StreamName,
		Description:      "Email Scout events",
		Subjects:         events.StreamSubjects,
		Retention:        jetstream.LimitsPolicy,
		Storage:          jetstream.FileStorage,
		MaxAge:           maxAge,
		Duplicates:       events.DuplicateWindow,
		Replicas:         max(o.Replicas, 1),
		SubjectTransform: partitionTransform(),
	}
}

// retiredDurables are durable consumers of earlier versions that no
// service binds any more; the provisioning job deletes them, so that the
// server stops keeping their state: "evaluator", one consumer pinned to
// one replica before the evaluator's work was partitioned
// (events.EvaluatorConsumer).
var retiredDurables = []string{"evaluator"}

// partitionTransform is the stream's subject transform that appends the
// check's partition (events.PartitionTransform).
func partitionTransform() *jetstream.SubjectTransformConfig {
	src, dst := events.PartitionTransform()
	return &jetstream.SubjectTransformConfig{Source: src, Destination: dst}
}

// Provision creates (or, with Update, updates) the events stream and every
// KV bucket of events.Buckets. KV buckets allow per-key TTLs (NATS >= 2.11).
func Provision(ctx context.Context, js jetstream.JetStream, o ProvisionOptions) error {
	sc := StreamConfig(o)
	if o.Update {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("provision stream %s: %w", sc.Name, err)
		}
		for _, d := range retiredDurables {
			if err := js.DeleteConsumer(ctx, sc.Name, d); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("provision stream %s: delete the retired consumer %s: %w", sc.Name, d, err)
			}
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
// not capture yet (a new event's subject, after an upgrade) and the
// partition transform when it has none (a stream made before partitions),
// and changes nothing else: without it, publishing the new event would
// fail with "no responders", or the evaluator would see no events, until
// the provisioning job ran.
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
	if cfg.SubjectTransform == nil {
		cfg.SubjectTransform = sc.SubjectTransform
		missing = true
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
		cc.PriorityPolicy = jetstream.PriorityPolicyPrioritized
		cc.PriorityGroups = []string{def.PriorityGroup}
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

// NATSSubscriber subscribes with core NATS (no JetStream consumer): a
// JetStream publish is seen by core subscribers of its subject too, while
// they are connected. The receiver's IMAP mode follows mail.sent with it.
type NATSSubscriber struct {
	NC *nats.Conn
}

// Subscribe calls handle with the data of every message on subject, on
// the connection's delivery goroutine, until unsubscribe is called.
func (s NATSSubscriber) Subscribe(subject string, handle func(data []byte)) (unsubscribe func(), err error) {
	sub, err := s.NC.Subscribe(subject, func(m *nats.Msg) { handle(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
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
	data, err := encodeEvent(ev)
	if err != nil {
		return false, err
	}
	ack, err := p.JS.Publish(ctx, ev.Subject(), data, jetstream.WithMsgID(ev.MsgID()))
	if err != nil {
		return false, publishError(ev, err)
	}
	return ack.Duplicate, nil
}

// Published is the outcome of one event of PublishAll: stored (Err nil),
// possibly as a Duplicate of an event with the same id that the stream
// had already (within events.DuplicateWindow), or not stored (Err:
// permanent for an event that fails Validate, temporary otherwise).
type Published struct {
	Duplicate bool
	Err       error
}

// PublishAll publishes evs in their order, like Publish, without waiting
// for one acknowledgement before sending the next (JetStream asynchronous
// publish, at most PublishAllInFlight unacknowledged at a time; the
// stream stores them in the order sent). It waits for every
// acknowledgement, at most PublishAckWait each from its sending or until
// ctx ends (then nothing more is sent), and returns one outcome per event,
// in the order of evs. One round trip to NATS then carries many events
// instead of one: the scheduler publishes all the tests due at one wake
// this way (docs/capacity.md, "A million checks").
func (p JetStreamPublisher) PublishAll(ctx context.Context, evs []events.Event) []Published {
	out := make([]Published, len(evs))
	type pending struct {
		i      int
		future jetstream.PubAckFuture
		sent   time.Time
	}
	var inFlight []pending
	wait := func(w pending) {
		timer := time.NewTimer(PublishAckWait - time.Since(w.sent))
		defer timer.Stop()
		var err error
		select {
		case ack := <-w.future.Ok():
			out[w.i].Duplicate = ack.Duplicate
			return
		case err = <-w.future.Err():
		case <-timer.C:
			err = jetstream.ErrAsyncPublishTimeout
		case <-ctx.Done():
			err = ctx.Err()
		}
		out[w.i].Err = publishError(evs[w.i], err)
	}
	for i, ev := range evs {
		if err := ctx.Err(); err != nil { // nothing more is sent
			out[i].Err = publishError(ev, err)
			continue
		}
		data, err := encodeEvent(ev)
		if err != nil {
			out[i].Err = err
			continue
		}
		if len(inFlight) == PublishAllInFlight {
			wait(inFlight[0])
			inFlight = inFlight[1:]
		}
		msg := &nats.Msg{Subject: ev.Subject(), Data: data, Header: nats.Header{}}
		future, err := p.JS.PublishMsgAsync(msg, jetstream.WithMsgID(ev.MsgID()))
		if err != nil {
			out[i].Err = publishError(ev, err)
			continue
		}
		inFlight = append(inFlight, pending{i, future, time.Now()})
	}
	for _, w := range inFlight {
		wait(w)
	}
	return out
}

// PublishAllInFlight and PublishAckWait bound PublishAll: events sent and
// not yet acknowledged, and the wait for one acknowledgement.
const (
	PublishAllInFlight = 256
	PublishAckWait     = 10 * time.Second
)

// encodeEvent validates ev and encodes it as JSON; either failure is
// permanent.
func encodeEvent(ev events.Event) ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return nil, fault.Permanent(publishError(ev, err))
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fault.Permanent(publishError(ev, err))
	}
	return data, nil
}

// publishError is err, why ev was not published, naming ev's subject.
func publishError(ev events.Event, err error) error {
	return fmt.Errorf("publish %s: %w", ev.Subject(), err)
}
