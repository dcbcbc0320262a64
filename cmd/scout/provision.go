package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

// maxReplicas is JetStream's largest replication factor.
const maxReplicas = 5

// provisionOptions are the resolved flags of `scout provision`.
type provisionOptions struct {
	natsURL    string
	auth       platform.NATSAuth // SCOUT_NATS_CREDS_FILE, SCOUT_NATS_NKEY_FILE, SCOUT_NATS_TLS_*
	replicas   int
	maxAge     time.Duration
	clickhouse string // empty: no ClickHouse step
	timeout    time.Duration
}

func init() {
	commands = append(commands, func(getenv func(string) string) *cobra.Command {
		var o provisionOptions
		var maxAge string
		cmd := &cobra.Command{
			Use:   "provision",
			Short: "Create or update the JetStream stream, KV buckets and ClickHouse schema (idempotent)",
			Long: `Create the JetStream stream and KV buckets of Email Scout, or update them to the given
replicas and max age when they exist (events are kept), then create the ClickHouse
database and apply the schema migrations when a DSN is given. Running it again changes
nothing. The Kubernetes provisioning Job runs it (docs/deploy.md).

Flags fall back to the environment: --nats to SCOUT_NATS_URL, --replicas to
SCOUT_STREAM_REPLICAS, --max-age to SCOUT_STREAM_MAX_AGE, --clickhouse to
SCOUT_CLICKHOUSE_DSN. NATS and ClickHouse are retried until --timeout. With
least-privilege NATS users (scout nats-config), it connects as the user
"provision" with SCOUT_NATS_NKEY_FILE or SCOUT_NATS_CREDS_FILE, and TLS with
SCOUT_NATS_TLS_CA (docs/configuration.md).`,
			Example: `  scout provision --nats nats://127.0.0.1:4222 --replicas 1
  scout provision --nats nats://nats:4222 --replicas 3 --max-age 14d --clickhouse clickhouse://scout:secret@clickhouse:9000/scout`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := resolveProvisionOptions(cmd, getenv, &o, maxAge); err != nil {
					return exitError{code: 2, err: err}
				}
				log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
				return provision(cmd.Context(), o, cmd.OutOrStdout(), log)
			},
		}
		f := cmd.Flags()
		f.StringVar(&o.natsURL, "nats", "", "NATS server(s), comma-separated (default $SCOUT_NATS_URL, else nats://127.0.0.1:4222)")
		f.IntVar(&o.replicas, "replicas", 0, "replicas of the stream and KV buckets: 1 (dev) to 5; 3 in production (default $SCOUT_STREAM_REPLICAS, else 1)")
		f.StringVar(&maxAge, "max-age", "", "keep events this long: a Go duration (72h) or days (7d) (default $SCOUT_STREAM_MAX_AGE, else 7d)")
		f.StringVar(&o.clickhouse, "clickhouse", "", "ClickHouse DSN, clickhouse://user:password@host:9000/database (default $SCOUT_CLICKHOUSE_DSN; empty: skip ClickHouse)")
		f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up when NATS or ClickHouse cannot be reached within this time")
		return cmd
	})
}

// resolveProvisionOptions fills what the flags did not set from the
// environment and checks every value. Errors name the flag or variable.
func resolveProvisionOptions(cmd *cobra.Command, getenv func(string) string, o *provisionOptions, maxAge string) error {
	var errs []error
	if o.natsURL == "" {
		o.natsURL = getenv("SCOUT_NATS_URL")
	}
	if o.natsURL == "" {
		o.natsURL = "nats://127.0.0.1:4222"
	}
	auth, err := platform.LoadEnv[platform.NATSAuth](getenv)
	if err != nil {
		errs = append(errs, err)
	}
	o.auth = auth
	if !cmd.Flags().Changed("replicas") {
		o.replicas = 1
		if v := getenv("SCOUT_STREAM_REPLICAS"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("SCOUT_STREAM_REPLICAS=%q: not a number", v))
			}
			o.replicas = n
		}
	}
	if o.replicas < 1 || o.replicas > maxReplicas {
		errs = append(errs, fmt.Errorf("--replicas %d: must be 1 to %d (3 in production)", o.replicas, maxReplicas))
	}
	name := "--max-age"
	if maxAge == "" {
		maxAge, name = getenv("SCOUT_STREAM_MAX_AGE"), "SCOUT_STREAM_MAX_AGE"
	}
	o.maxAge = events.DefaultMaxAge
	if maxAge != "" {
		d, err := parseSince(maxAge)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		} else if d < events.DuplicateWindow {
			errs = append(errs, fmt.Errorf("%s: %s is shorter than the duplicate window (%s)", name, d, events.DuplicateWindow))
		}
		o.maxAge = d
	}
	if o.clickhouse == "" {
		o.clickhouse = getenv("SCOUT_CLICKHOUSE_DSN")
	}
	if o.clickhouse != "" {
		if _, err := recorder.ParseDSN(o.clickhouse); err != nil {
			errs = append(errs, fmt.Errorf("ClickHouse DSN: %w", err))
		}
	}
	if o.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: must be positive", o.timeout))
	}
	return errors.Join(errs...)
}

// provision brings NATS and, when configured, ClickHouse to the state o
// describes and prints one line per stream, bucket and database: created,
// updated (with what changed) or unchanged.
func provision(ctx context.Context, o provisionOptions, out io.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	nc, js, err := platform.Connect(ctx, o.natsURL, "scout-provision", o.auth, log)
	if err != nil {
		return err
	}
	defer func() {
		nc.SetDisconnectErrHandler(nil) // closing is not a disconnection worth a warning
		nc.Close()
	}()
	fmt.Fprintf(out, "nats %s: connected\n", nc.ConnectedUrlRedacted())

	streams := []string{events.StreamName}
	labels := []string{"stream " + events.StreamName}
	for _, b := range events.Buckets {
		streams = append(streams, kvStream(b.Name))
		labels = append(labels, "kv "+b.Name)
	}
	before := make([]*jetstream.StreamConfig, len(streams))
	for i, name := range streams {
		if before[i], err = streamConfig(ctx, js, name); err != nil {
			return err
		}
	}
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: o.replicas, MaxAge: o.maxAge, Update: true}); err != nil {
		return fmt.Errorf("%w%s", err, replicasHint(err, o.replicas))
	}
	for i, name := range streams {
		after, err := streamConfig(ctx, js, name)
		if err != nil {
			return err
		}
		if after == nil {
			return fmt.Errorf("%s: missing after provisioning", labels[i])
		}
		fmt.Fprintf(out, "%s: %s\n", labels[i], describeChange(before[i], after))
	}

	if o.clickhouse == "" {
		fmt.Fprintln(out, "clickhouse: skipped (no --clickhouse and no SCOUT_CLICKHOUSE_DSN)")
		return nil
	}
	applied, err := migrateClickHouse(ctx, o.clickhouse, log)
	if err != nil {
		return err
	}
	latest := len(recorder.Migrations())
	where := "clickhouse " + recorder.RedactDSN(o.clickhouse)
	if len(applied) == 0 {
		fmt.Fprintf(out, "%s: schema up to date (version %d)\n", where, latest)
		return nil
	}
	versions := make([]string, len(applied))
	for i, v := range applied {
		versions[i] = strconv.FormatUint(uint64(v), 10)
	}
	fmt.Fprintf(out, "%s: applied migrations %s (schema version %d)\n", where, strings.Join(versions, ", "), latest)
	return nil
}

// kvStream is the stream that backs KV bucket name (JetStream's naming).
func kvStream(bucket string) string { return "KV_" + bucket }

// streamConfig returns the configuration of stream name, or nil when it
// does not exist.
func streamConfig(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamConfig, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return &info.Config, nil
}

// describeChange says what provisioning did to one stream: "created (...)",
// "updated (field old -> new, ...)" or "unchanged (...)".
func describeChange(before, after *jetstream.StreamConfig) string {
	now := fmt.Sprintf("replicas %d, max age %s, %s storage", after.Replicas, ageString(after.MaxAge), strings.ToLower(after.Storage.String()))
	if after.MaxMsgsPerSubject > 0 {
		now += fmt.Sprintf(", history %d", after.MaxMsgsPerSubject)
	}
	if before == nil {
		return "created (" + now + ")"
	}
	var changes []string
	if before.Replicas != after.Replicas {
		changes = append(changes, fmt.Sprintf("replicas %d -> %d", before.Replicas, after.Replicas))
	}
	if before.MaxAge != after.MaxAge {
		changes = append(changes, fmt.Sprintf("max age %s -> %s", ageString(before.MaxAge), ageString(after.MaxAge)))
	}
	if before.Duplicates != after.Duplicates {
		changes = append(changes, fmt.Sprintf("duplicate window %s -> %s", before.Duplicates, after.Duplicates))
	}
	if before.MaxMsgsPerSubject != after.MaxMsgsPerSubject {
		changes = append(changes, fmt.Sprintf("history %d -> %d", before.MaxMsgsPerSubject, after.MaxMsgsPerSubject))
	}
	if !slices.Equal(before.Subjects, after.Subjects) {
		changes = append(changes, fmt.Sprintf("subjects %v -> %v", before.Subjects, after.Subjects))
	}
	if before.Description != after.Description {
		changes = append(changes, "description")
	}
	if len(changes) == 0 {
		return "unchanged (" + now + ")"
	}
	return "updated (" + strings.Join(changes, ", ") + ")"
}

// ageString shows a max age in days when it is a whole number of days
// ("7d"), else as a Go duration; zero is "unlimited".
func ageString(d time.Duration) string {
	switch {
	case d == 0:
		return "unlimited"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	default:
		return d.String()
	}
}

// replicasHint explains the usual cause of a failed provisioning with
// several replicas: a NATS server that is not a JetStream cluster.
func replicasHint(err error, replicas int) string {
	if replicas > 1 && strings.Contains(strings.ToLower(err.Error()), "replicas") {
		return fmt.Sprintf(" (--replicas %d needs a JetStream cluster of at least %d servers; use --replicas 1 against a single server)", replicas, replicas)
	}
	return ""
}

// migrateClickHouse creates the database of dsn when missing and applies
// the recorder's migrations, retrying with backoff until ctx ends (the
// server may still be starting). It returns the versions it applied.
func migrateClickHouse(ctx context.Context, dsn string, log *slog.Logger) ([]uint32, error) {
	var last error
	op := func() ([]uint32, error) {
		if last = recorder.CreateDatabase(ctx, dsn); last != nil {
			return nil, last
		}
		st, err := recorder.OpenStore(ctx, dsn)
		if last = err; err != nil {
			return nil, err
		}
		defer st.Close()
		applied, err := st.Migrate(ctx, recorder.Migrations())
		last = err
		return applied, err
	}
	notify := func(err error, next time.Duration) {
		log.Warn("clickhouse not ready, retrying", "dsn", recorder.RedactDSN(dsn), "retry_in", next.String(), "error", err)
	}
	applied, err := backoff.Retry(ctx, op, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithNotify(notify), backoff.WithMaxElapsedTime(0))
	if err != nil && last != nil && ctx.Err() != nil {
		// Retry returns the context's error: the last attempt's says why.
		err = fmt.Errorf("%w: %w", ctx.Err(), last)
	}
	if err != nil {
		return applied, fmt.Errorf("clickhouse %s: %w", recorder.RedactDSN(dsn), err)
	}
	return applied, nil
}
