package recorder

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the recorder (environment variables in
// docs/configuration.md). New fills zero values with the defaults of the
// envDefault tags (TTLDays 0 is a setting: keep everything), so that
// `scout dev` can set DSN alone.
type Config struct {
	// DSN is the ClickHouse server, native protocol:
	// clickhouse://user:password@host:9000/database (see ParseDSN). The
	// database is created when missing.
	DSN string `env:"SCOUT_CLICKHOUSE_DSN,required"`
	// BatchSize: a batch is inserted when it holds this many rows (1 to
	// the consumer's MaxAckPending, 10000).
	BatchSize int `env:"SCOUT_RECORDER_BATCH_SIZE" envDefault:"1000"`
	// BatchWait: a batch is inserted at the latest this long after its
	// first row arrived.
	BatchWait time.Duration `env:"SCOUT_RECORDER_BATCH_WAIT" envDefault:"2s"`
	// TTLDays: monthly partitions whose every row is older than this many
	// days are dropped (checked hourly); 0 keeps everything.
	TTLDays int `env:"SCOUT_CLICKHOUSE_TTL_DAYS" envDefault:"400" zero:"setting"`
	// MaxBackoff caps the wait between retries of a failed insert or of
	// the first connection (exponential from 250 ms).
	MaxBackoff time.Duration `env:"SCOUT_RECORDER_MAX_BACKOFF" envDefault:"30s"`
}

// Defaults is the configuration of an empty environment (the envDefault
// tags above: the one place the defaults are written).
func Defaults() Config { return platform.Defaults[Config]() }

// Validate reports every invalid setting, each naming its environment
// variable.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("SCOUT_CLICKHOUSE_DSN is required (e.g. clickhouse://127.0.0.1:9000/scout)"))
	} else if _, err := ParseDSN(c.DSN); err != nil {
		errs = append(errs, fmt.Errorf("SCOUT_CLICKHOUSE_DSN: %w", err))
	}
	if maxRows := events.RecorderConsumer().MaxAckPending; c.BatchSize < 1 || c.BatchSize > maxRows {
		errs = append(errs, fmt.Errorf("SCOUT_RECORDER_BATCH_SIZE=%d: must be 1..%d (the consumer's max ack pending)", c.BatchSize, maxRows))
	}
	if c.BatchWait <= 0 {
		errs = append(errs, fmt.Errorf("SCOUT_RECORDER_BATCH_WAIT=%s: must be positive", c.BatchWait))
	}
	if ackWait := events.RecorderConsumer().AckWait; c.BatchWait >= ackWait/2 {
		errs = append(errs, fmt.Errorf("SCOUT_RECORDER_BATCH_WAIT=%s: must be under half the consumer's ack wait (%s)", c.BatchWait, ackWait))
	}
	if c.TTLDays < 0 {
		errs = append(errs, fmt.Errorf("SCOUT_CLICKHOUSE_TTL_DAYS=%d: must be 0 (keep everything) or more", c.TTLDays))
	}
	if c.MaxBackoff <= 0 {
		errs = append(errs, fmt.Errorf("SCOUT_RECORDER_MAX_BACKOFF=%s: must be positive", c.MaxBackoff))
	}
	if len(errs) > 0 {
		return fmt.Errorf("recorder configuration: %w", errors.Join(errs...))
	}
	return nil
}

// Deps are the recorder's collaborators.
type Deps struct {
	// JS is the JetStream context the recorder's consumer is bound on
	// (events.RecorderConsumer on events.StreamName). Required.
	JS jetstream.JetStream
	// Writer receives the batches; nil: a Store opened from Config.DSN
	// (database created and migrations applied at start).
	Writer Writer
	// Health gets the "clickhouse" and "consumer:recorder" readiness
	// checks; nil: none.
	Health *platform.Health
	// Clock times batches, retries and retention; nil: the real clock.
	Clock      clockwork.Clock
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
}
