package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

// Base is the configuration every service reads from its environment.
type Base struct {
	NATSURL string `env:"SCOUT_NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// NATS is the service's own NATS user and TLS (none in scout dev).
	NATS NATSAuth
	// Provision creates the stream and KV buckets at start when missing,
	// which needs JetStream admin rights; a service that connects as its
	// own least-privilege user sets it false, and the provisioning Job
	// creates them (docs/deploy.md).
	Provision  bool   `env:"SCOUT_NATS_PROVISION" envDefault:"true"`
	HTTPAddr   string `env:"SCOUT_HTTP_ADDR" envDefault:":9090"`
	LogLevel   string `env:"SCOUT_LOG_LEVEL" envDefault:"info"`
	ChecksFile string `env:"SCOUT_CHECKS_FILE" envDefault:"/etc/scout/checks.yaml"`
	// ChecksReload is how often the check file is read for a new version
	// (CheckFileWatcher); 0 turns reloading off.
	ChecksReload    time.Duration `env:"SCOUT_CHECKS_RELOAD_INTERVAL" envDefault:"10s"`
	ShutdownTimeout time.Duration `env:"SCOUT_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	StreamReplicas  int           `env:"SCOUT_STREAM_REPLICAS" envDefault:"1"`
}

// LoadEnv fills a config struct tagged for github.com/caarlos0/env from
// getenv (os.Getenv in production, a map in tests). Errors name every
// missing or malformed variable.
func LoadEnv[T any](getenv func(string) string) (T, error) {
	var cfg T
	params, err := env.GetFieldParams(&cfg)
	if err != nil {
		return cfg, err
	}
	vars := map[string]string{}
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			vars[p.Key] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return cfg, envError(reflect.TypeOf(cfg), vars, err)
	}
	return cfg, nil
}

// envError rewrites caarlos0/env's errors, which name Go struct fields, so
// that each names the environment variable and the value given.
func envError(t reflect.Type, vars map[string]string, err error) error {
	keys := map[string]string{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" && f.Type.String() != "time.Time" {
				walk(f.Type, prefix+f.Tag.Get("envPrefix"))
				continue
			}
			if k, _, _ := strings.Cut(f.Tag.Get("env"), ","); k != "" {
				keys[f.Name] = prefix + k
			}
		}
	}
	walk(t, "")
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("configuration: %w", err)
	}
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if k, ok := keys[pe.Name]; ok {
				inner := pe.Err
				if u := errors.Unwrap(inner); u != nil {
					inner = u
				}
				errs = append(errs, fmt.Errorf("%s=%q: %w", k, vars[k], inner))
				continue
			}
		}
		errs = append(errs, e)
	}
	return fmt.Errorf("configuration: %w", errors.Join(errs...))
}

// Runtime is what a service's main builds before it starts the service:
// logger, NATS, metrics registry and health.
type Runtime struct {
	Base     Base
	Logger   *slog.Logger
	NC       *nats.Conn
	JS       jetstream.JetStream
	Registry *prometheus.Registry
	Health   *Health
	// Checks is the check file in force; Serve runs its watcher, which
	// applies a new valid version in place (Base.ChecksReload).
	Checks  *checks.Live
	watcher *CheckFileWatcher
}

// Start builds the runtime of service name: it logs JSON to stdout, loads
// the check file, connects to NATS (waiting until ctx ends), makes sure the
// stream and buckets exist (unless base.Provision is off), and registers
// NATS readiness.
func Start(ctx context.Context, base Base, name string, stdout io.Writer) (*Runtime, error) {
	log, err := NewLogger(stdout, base.LogLevel)
	if err != nil {
		return nil, err
	}
	log = log.With("service", name)
	data, err := os.ReadFile(base.ChecksFile)
	if err != nil {
		return nil, fmt.Errorf("read check file: %w", err)
	}
	f, err := checks.Parse(base.ChecksFile, data)
	if err != nil {
		return nil, err
	}
	for _, w := range f.Warnings {
		log.Warn("check file", "warning", w.Error())
	}
	nc, js, err := Connect(ctx, base.NATSURL, "scout-"+name, base.NATS, log)
	if err != nil {
		return nil, err
	}
	if base.Provision {
		if err := Provision(ctx, js, ProvisionOptions{Replicas: base.StreamReplicas}); err != nil {
			nc.Close()
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), BuildInfoCollector())
	h := NewHealth()
	h.Add("nats", func() error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats is %s", s)
		}
		return nil
	})
	live := checks.NewLive(f)
	var w *CheckFileWatcher
	if base.ChecksReload > 0 {
		if w, err = NewCheckFileWatcher(base.ChecksFile, data, live, base.ChecksReload, nil, log, reg); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return &Runtime{Base: base, Logger: log, NC: nc, JS: js, Registry: reg, Health: h, Checks: live, watcher: w}, nil
}

// Component is anything with a lifetime (a service).
type Component interface {
	Run(ctx context.Context) error
}

// Serve runs the components and the HTTP endpoints until ctx ends or one of
// them fails, then drains NATS (pending publishes and acks are flushed).
func (r *Runtime) Serve(ctx context.Context, components ...Component) error {
	g, gctx := errgroup.WithContext(ctx)
	if r.watcher != nil {
		components = append(components, r.watcher)
	}
	for _, c := range components {
		g.Go(func() error { return c.Run(gctx) })
	}
	g.Go(func() error {
		return ServeHTTP(gctx, r.Base.HTTPAddr, HTTPHandler(r.Health, r.Registry), r.Base.ShutdownTimeout, r.Logger)
	})
	err := g.Wait()
	if derr := r.NC.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
		r.Logger.Warn("nats drain", "error", derr)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	r.Logger.Info("stopped")
	return nil
}
