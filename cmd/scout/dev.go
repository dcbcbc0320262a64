package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/stack"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/emailscout/emailscout/services/scheduler"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

func init() {
	commands = append(commands, newDevCmd)
}

type devOptions struct {
	checksFile string
	dataDir    string
	duration   time.Duration
	fresh      bool
	breaks     []string
	breakFor   time.Duration
	natsPort   int
	httpAddr   string
	clickhouse string
	verbose    bool
	getenv     func(string) string
	// demoPassword is the demo mailbox's password; "": random per run
	// (tests set it to look for it where it must not be).
	demoPassword string
	// registry receives every service's metrics; nil: a new one (tests
	// pass theirs to read it).
	registry *prometheus.Registry
}

func newDevCmd(getenv func(string) string) *cobra.Command {
	o := devOptions{getenv: getenv}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run every service in one process with an embedded NATS and a demo mail server",
		Long: `scout dev runs the whole Email Scout loop on this machine: an embedded NATS
JetStream server, the scheduler, a sender and a receiver per site, the
evaluator, the notifier (printing the SMS it would send) and a demo "customer"
mail server whose reflector answers every probe. Service checks whose host is
demo.scout.test talk to the demo server's SMTP, IMAP and POP3 sides (STARTTLS
with a certificate made at start; password_env SCOUT_DEMO_PASSWORD is the demo
mailbox's password). It prints one line per finished attempt and a summary at
the end.

With --duration it stops by itself and exits 0 only if at least one round
trip completed. --break CHECK breaks that check at the demo server: a round
trip's probes are swallowed (timeouts, retests, an incident), a service check
is refused (SMTP 554 to EHLO, IMAP BYE, POP3 -ERR); --break-for ends the break
after a while, so the resolution shows too.`,
		Example: `  scout dev
  scout dev --duration 45s
  scout dev --break acme-roundtrip --break-for 40s --duration 90s
  scout dev --break acme-smtp --break-for 30s --duration 60s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.checksFile, "checks", "deploy/dev/checks.yaml", "check file")
	f.StringVar(&o.dataDir, "data-dir", "", "JetStream data and logs (default: <user cache dir>/email-scout/dev)")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until interrupted)")
	f.BoolVar(&o.fresh, "fresh", false, "wipe the data directory first")
	f.StringArrayVar(&o.breaks, "break", nil, "break this check at the demo server: swallow its probes, refuse its service checks (repeatable)")
	f.DurationVar(&o.breakFor, "break-for", 0, "end the --break after this long (0: for the whole run)")
	f.IntVar(&o.natsPort, "nats-port", -1, "NATS client port on 127.0.0.1 (-1: any free port)")
	f.StringVar(&o.httpAddr, "http", "127.0.0.1:9090", "/metrics, /healthz and /readyz of the whole process (127.0.0.1:0: any free port; empty: none)")
	f.StringVar(&o.clickhouse, "clickhouse", getenv("SCOUT_CLICKHOUSE_DSN"), "record history into this ClickHouse (clickhouse://127.0.0.1:9000/default); default $SCOUT_CLICKHOUSE_DSN")
	f.BoolVar(&o.verbose, "verbose", false, "write the services' JSON logs to stderr instead of the log file")
	return cmd
}

func runDev(ctx context.Context, o devOptions, stdout io.Writer) error {
	f, err := checks.Load(o.checksFile)
	if err != nil {
		// Exit status 2, as check-config's for the same file.
		if errors.Is(err, os.ErrNotExist) {
			return exitError{code: 2, err: fmt.Errorf("%w (run scout dev from the repository root, or pass --checks FILE)", err)}
		}
		return exitError{code: 2, err: err}
	}
	for _, b := range o.breaks {
		if f.Lookup(b) == nil {
			return fmt.Errorf("--break %s: no such check in %s", b, o.checksFile)
		}
	}
	// The HTTP port first: a port already taken (another scout dev, a
	// service on 9090) is reported before anything starts or is printed.
	var httpLn net.Listener
	if o.httpAddr != "" {
		httpLn, err = net.Listen("tcp", o.httpAddr)
		if err != nil {
			return fmt.Errorf("--http %s: %w (pass --http 127.0.0.1:0 for any free port, or --http \"\" for no HTTP server)", o.httpAddr, err)
		}
		defer httpLn.Close()
	}
	if o.dataDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no cache directory: %w (pass --data-dir)", err)
		}
		o.dataDir = filepath.Join(cache, "email-scout", "dev")
	}
	if o.fresh {
		if err := os.RemoveAll(o.dataDir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	var logOut io.Writer = os.Stderr
	logPath := "stderr"
	if !o.verbose {
		lf, err := os.OpenFile(filepath.Join(o.dataDir, "scout-dev.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer lf.Close()
		logOut, logPath = lf, lf.Name()
	}
	log, err := platform.NewLogger(logOut, "info")
	if err != nil {
		return err
	}
	// The demo listeners of service checks first: they set the checks' ports.
	services, err := newDemoServices(f, o.breaks, o.demoPassword, log)
	if err != nil {
		return err
	}
	running := false
	defer func() {
		if !running {
			services.close()
		}
	}()

	ns, err := startNATS(filepath.Join(o.dataDir, "nats"), o.natsPort)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("scout-dev"))
	if err != nil {
		return fmt.Errorf("connect to embedded nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: 1, Update: true}); err != nil {
		return err
	}
	keys, err := devKeys(filepath.Join(o.dataDir, "probe-keys"), f)
	if err != nil {
		return err
	}
	// The demo certificate's authority, for checking the demo servers by
	// hand (scout check --ca), as the header below shows.
	caFile := filepath.Join(o.dataDir, "demo-ca.pem")
	if err := os.WriteFile(caFile, services.caPEM, 0o644); err != nil {
		return err
	}
	pr := newPrinter(stdout, f)
	reg := o.registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	w := &devWorld{opts: o, checks: f, js: js, log: log, keys: keys, reg: reg, health: platform.NewHealth(), out: pr,
		services: services, httpLn: httpLn}
	w.reg.MustRegister(collectors.NewGoCollector(), platform.BuildInfoCollector())

	fmt.Fprintf(stdout, "Email Scout dev: %d checks at %d sites (%s); NATS %s; logs %s\n",
		len(f.Checks), len(f.AllSites()), strings.Join(f.AllSites(), ", "), ns.ClientURL(), logPath)
	for _, c := range f.Checks {
		bound := c.DetectionBound()
		where := c.Target
		if c.Kind != events.KindRoundTrip {
			where = c.Kind + " " + c.Where() + " (" + c.Service.TLS + ")"
		}
		fmt.Fprintf(stdout, "  %-20s %s every %v, timeout %v, slow %v: an outage is told within %v\n", c.ID, where, c.Interval, c.Timeout, c.Slow, bound.Round(time.Second))
	}
	for _, c := range f.Checks {
		if c.Kind == events.KindSMTP && isDemoHost(c.Service.Host) {
			fmt.Fprintf(stdout, "By hand, the demo SMTP server of %s: go run ./cmd/scout check smtp 127.0.0.1:%d --ca %s -v\n", c.ID, c.Service.Port, caFile)
			break
		}
	}
	if len(o.breaks) > 0 {
		until := "for the whole run"
		if o.breakFor > 0 {
			until = "for " + o.breakFor.String()
		}
		var swallowed, refused []string
		for _, b := range o.breaks {
			if f.Lookup(b).Kind == events.KindRoundTrip {
				swallowed = append(swallowed, b)
			} else {
				refused = append(refused, b)
			}
		}
		if len(swallowed) > 0 {
			fmt.Fprintf(stdout, "  demo server swallows the probes of %s %s\n", strings.Join(swallowed, ", "), until)
		}
		if len(refused) > 0 {
			fmt.Fprintf(stdout, "  demo server refuses the service checks %s %s\n", strings.Join(refused, ", "), until)
		}
	}
	if httpLn != nil {
		fmt.Fprintf(stdout, "  /metrics, /healthz and /readyz on http://%s\n", httpLn.Addr())
		fmt.Fprintf(stdout, "  status pages on http://%s/ (JSON API: /api/v1/overview)\n", httpLn.Addr())
	}
	if o.clickhouse == "" {
		fmt.Fprintln(stdout, "  history is off (no --clickhouse): results are not recorded")
	} else {
		fmt.Fprintln(stdout, "  history is recorded into ClickHouse (--clickhouse); see it with: scout history CHECK")
	}

	runCtx := ctx
	if o.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	running = true // w.run serves the demo services and closes them
	err = w.run(runCtx)
	pr.summary()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if o.duration > 0 && pr.roundTrips() == 0 {
		return exitError{code: 1, err: fmt.Errorf("no round trip completed in %v (see %s)", o.duration, logPath)}
	}
	return nil
}

func startNATS(dir string, port int) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "scout-dev", Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats did not start within 10s")
	}
	return ns, nil
}

// devWorld holds everything `scout dev` runs.
type devWorld struct {
	opts   devOptions
	checks *checks.File
	js     jetstream.JetStream
	log    *slog.Logger
	keys   string // SCOUT_PROBE_KEYS format
	reg    *prometheus.Registry
	health *platform.Health
	out    *printer
	// services are the demo server's SMTP, IMAP and POP3 sides for service
	// checks.
	services *demoServices
	// httpLn serves /metrics, /healthz and /readyz (nil: none).
	httpLn net.Listener
}

// breakEndNote says what changes when --break-for ends: the probes of a
// round-trip check flow again, a service check answers normally again.
func breakEndNote(f *checks.File, breaks []string) string {
	var swallowed, refused []string
	for _, b := range breaks {
		if c := f.Lookup(b); c != nil && c.Kind != events.KindRoundTrip {
			refused = append(refused, b)
		} else {
			swallowed = append(swallowed, b)
		}
	}
	var parts []string
	if len(swallowed) > 0 {
		parts = append(parts, "the probes of "+strings.Join(swallowed, ", ")+" flow again")
	}
	switch len(refused) {
	case 0:
	case 1:
		parts = append(parts, refused[0]+" answers normally again")
	default:
		parts = append(parts, strings.Join(refused, ", ")+" answer normally again")
	}
	return strings.Join(parts, "; ")
}

// stackConfig is the whole monitor as `scout dev` runs it: every service,
// each from its defaults, with shorter waits where one process on one
// machine has nothing far away.
func (w *devWorld) stackConfig() stack.Config {
	cfg := demoStackConfig(w.keys)
	sch := scheduler.Defaults()
	cfg.Scheduler = &sch
	// A restarted `scout dev` takes its evaluator consumer over sooner.
	cfg.Evaluator.Failover = 5 * time.Second
	ncfg := notifier.Defaults()
	ncfg.Env = notifier.EnvDev
	// The log provider answers at once: short retries and waits.
	ncfg.MaxAttempts, ncfg.RetryFor, ncfg.RetryInitial, ncfg.RetryMax = 3, time.Minute, time.Second, 5*time.Second
	ncfg.SendTimeout, ncfg.Lease, ncfg.OpenWait, ncfg.Workers = 5*time.Second, time.Minute, 30*time.Second, 2
	cfg.Notifier = &ncfg
	if w.opts.clickhouse != "" {
		rcfg := recorder.Defaults()
		rcfg.DSN = w.opts.clickhouse
		cfg.Recorder = &rcfg
	}
	return cfg
}

func (w *devWorld) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // an early error return stops what already runs
	defer cancel()
	getenv := w.opts.getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	deps := stack.Deps{Checks: w.checks, JS: w.js, Logger: w.log, Registerer: w.reg, Health: w.health,
		Provider: notifier.NewLogProvider(w.out.smsWriter()),
		// Service checks on demo.scout.test reach the demo listeners and
		// trust their certificate; SCOUT_DEMO_PASSWORD is the demo's.
		SenderDeps: func(_ string, d *sender.Deps) {
			d.LookupEnv, d.ServiceRootCAs, d.ServiceResolver = w.services.lookupEnv(getenv), w.services.pool, demoResolver{}
		}}
	demo, st, err := newDemoStack(w.stackConfig(), deps, w.opts.breaks, w.log)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.services.run(ctx) })
	g.Go(func() error { return demo.run(ctx) })
	g.Go(func() error { return st.Run(ctx) })
	if w.opts.breakFor > 0 && len(w.opts.breaks) > 0 {
		g.Go(func() error {
			select {
			case <-ctx.Done():
			case <-time.After(w.opts.breakFor):
				demo.unbreak()
				w.services.unbreak()
				w.out.note("demo server: %s", breakEndNote(w.checks, w.opts.breaks))
			}
			return nil
		})
	}
	g.Go(func() error { return w.out.follow(ctx, w.js) })
	if w.httpLn != nil {
		if err := w.serveHTTP(ctx, g); err != nil { // devweb.go: /metrics, /healthz, /readyz and the web pages
			return err
		}
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}
