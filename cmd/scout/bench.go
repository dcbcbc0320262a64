package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/stack"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newBenchCmd)
}

type benchOptions struct {
	rawFor   time.Duration
	clients  int
	tests    int
	checks   int
	sites    int
	dataDir  string
	maxWait  time.Duration
	jsonPath string
	cpuProf  string
	pacedFor time.Duration
	stack    bool
	st       stackBenchOptions
}

func newBenchCmd(func(string) string) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure raw SMTP on loopback against round trips through the whole pipeline",
		Long: `scout bench measures, on this machine and on loopback only:

  (a) the raw go-smtp client -> server rate, a new connection per message;
  (b) completed round-trip tests per second through the whole pipeline
      (embedded NATS, senders, demo mail server with the reflector,
      receivers, evaluator) at saturation: it publishes --tests tests at
      once and times them until their check.result is stored;

and prints both, the ratio pipeline / (raw / 2) (a round trip is two SMTP
transactions; the goal is >= 0.5), and the p50/p99 of the monitor-added
latency: from the end of DATA at the receiver to the check.result stored.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.stack {
				o.st.jsonPath = o.jsonPath
				return runStackBench(cmd.Context(), o.st, cmd.OutOrStdout())
			}
			return runBench(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.stack, "stack", false, "measure through the loopback Postfix + Dovecot of scripts/mailstack.sh instead (root, Debian): round trips per minute at saturation, CPU per round trip, RTT and its error against the mail server")
	f.StringVar(&o.st.paths, "paths", "pipe,imap-receiver,imap-reflector", "with --stack: the paths to measure")
	f.DurationVar(&o.st.step, "step", 15*time.Second, "with --stack: how long each rate step publishes tests")
	f.Float64Var(&o.st.startRate, "start-rate", 4, "with --stack: the first step's tests per second")
	f.Float64Var(&o.st.growth, "growth", 1.5, "with --stack: each step's rate is the last one's times this")
	f.Float64Var(&o.st.maxRate, "max-rate", 200, "with --stack: stop after this rate (tests per second)")
	f.IntVar(&o.st.checks, "stack-checks", 20, "with --stack: checks the tests are spread over")
	f.StringVar(&o.st.reflectorSMTP, "reflector-smtp", "", "with --stack: the pipe paths' reflector sends its reflections over SMTP to this loopback host:port (e.g. 127.0.0.1:25) instead of running sendmail(8)")
	f.DurationVar(&o.st.imapFastPoll, "imap-fast-poll", 0, "with --stack: the IMAP paths' fast poll, the receiver's SCOUT_RECEIVER_IMAP_FAST_POLL and the reflector's --fast-poll (0: their defaults)")
	f.StringVar(&o.st.stackDir, "stack-dir", "/etc/scout-mailstack", "with --stack: the mail stack's keys and certificate (SCOUT_STACK_DIR)")
	f.StringVar(&o.st.script, "mailstack", "scripts/mailstack.sh", "with --stack: the script that starts the mail stack")
	f.DurationVar(&o.rawFor, "raw-for", 5*time.Second, "how long to measure the raw SMTP rate")
	f.IntVar(&o.clients, "clients", 8, "concurrent SMTP clients for the raw rate")
	f.IntVar(&o.tests, "tests", 3000, "round-trip tests pushed through the pipeline")
	f.IntVar(&o.checks, "checks", 100, "checks the tests are spread over")
	f.IntVar(&o.sites, "sites", 2, "sites (a sender and a receiver each)")
	f.StringVar(&o.dataDir, "data-dir", "", "JetStream data (default: a temporary directory, removed afterwards)")
	f.DurationVar(&o.maxWait, "max-wait", 3*time.Minute, "give up when the pipeline has not finished by then")
	f.StringVar(&o.jsonPath, "json", "", "also write the figures to this file as JSON")
	f.StringVar(&o.cpuProf, "cpuprofile", "", "write a CPU profile of the pipeline run to this file")
	f.DurationVar(&o.pacedFor, "paced-for", 10*time.Second, "then publish tests at half the saturated rate for this long and measure the monitor-added latency there (0: skip)")
	return cmd
}

type benchFigures struct {
	RawMsgsPerSecond      float64 `json:"raw_msgs_per_second"`
	PipelineTestsPerSec   float64 `json:"pipeline_tests_per_second"`
	Ratio                 float64 `json:"ratio"`
	LatencyP50MS          float64 `json:"monitor_latency_p50_ms"`
	LatencyP99MS          float64 `json:"monitor_latency_p99_ms"`
	Tests                 int     `json:"tests"`
	OK                    int     `json:"ok"`
	NotOK                 int     `json:"not_ok"`
	PipelineSeconds       float64 `json:"pipeline_seconds"`
	RawMessages           int64   `json:"raw_messages"`
	RawClients            int     `json:"raw_clients"`
	SitesChecks           string  `json:"sites_checks"`
	RoundTripP50MS        float64 `json:"round_trip_p50_ms"`
	RoundTripP99MS        float64 `json:"round_trip_p99_ms"`
	MonitorLatencySamples int     `json:"monitor_latency_samples"`
	// At half the saturated rate, tests published evenly (--paced-for).
	HalfRateTestsPerSec float64 `json:"half_rate_tests_per_second,omitempty"`
	HalfRateLatencyP50  float64 `json:"half_rate_monitor_latency_p50_ms,omitempty"`
	HalfRateLatencyP99  float64 `json:"half_rate_monitor_latency_p99_ms,omitempty"`
	HalfRateSamples     int     `json:"half_rate_monitor_latency_samples,omitempty"`
}

func runBench(ctx context.Context, o benchOptions, stdout io.Writer) error {
	if o.tests < 1 || o.checks < 1 || o.sites < 1 || o.clients < 1 {
		return errors.New("--tests, --checks, --sites and --clients must be at least 1")
	}
	var fig benchFigures
	fmt.Fprintf(stdout, "raw go-smtp, new connection per message, %d clients, %v ...\n", o.clients, o.rawFor)
	n, err := rawSMTP(ctx, o.clients, o.rawFor)
	if err != nil {
		return err
	}
	fig.RawMessages, fig.RawClients = n, o.clients
	fig.RawMsgsPerSecond = float64(n) / o.rawFor.Seconds()
	fmt.Fprintf(stdout, "  %.0f messages/s\n", fig.RawMsgsPerSecond)

	fmt.Fprintf(stdout, "pipeline, %d tests over %d checks x %d sites ...\n", o.tests, o.checks, o.sites)
	if o.cpuProf != "" {
		pf, err := os.Create(o.cpuProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pf.Close()
		defer pprof.StopCPUProfile()
	}
	if err := pipeline(ctx, o, &fig); err != nil {
		return err
	}
	fig.Ratio = fig.PipelineTestsPerSec / (fig.RawMsgsPerSecond / 2)
	fmt.Fprintf(stdout, "  %.0f round-trip tests/s (%d ok, %d not ok, %.1fs); round trip p50 %.1f ms, p99 %.1f ms (queueing included: all tests start at once)\n",
		fig.PipelineTestsPerSec, fig.OK, fig.NotOK, fig.PipelineSeconds, fig.RoundTripP50MS, fig.RoundTripP99MS)
	fmt.Fprintf(stdout, "\nraw SMTP:                  %8.0f messages/s\n", fig.RawMsgsPerSecond)
	fmt.Fprintf(stdout, "pipeline:                  %8.0f round-trip tests/s\n", fig.PipelineTestsPerSec)
	verdict := "meets"
	if fig.Ratio < 0.5 {
		verdict = "below"
	}
	fmt.Fprintf(stdout, "ratio pipeline/(raw/2):    %8.2f (%s the design goal of 0.5; a figure, not a pass/fail test: it moves with the machine's load)\n", fig.Ratio, verdict)
	fmt.Fprintf(stdout, "monitor-added latency (end of DATA at the receiver -> check.result stored): p50 %.1f ms, p99 %.1f ms (%d samples) at saturation\n",
		fig.LatencyP50MS, fig.LatencyP99MS, fig.MonitorLatencySamples)
	if fig.HalfRateSamples > 0 {
		fmt.Fprintf(stdout, "                                                    p50 %.1f ms, p99 %.1f ms (%d samples) at half that rate (%.0f tests/s, evenly)\n",
			fig.HalfRateLatencyP50, fig.HalfRateLatencyP99, fig.HalfRateSamples, fig.HalfRateTestsPerSec)
	}
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(fig, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// rawSMTP runs a go-smtp server that accepts everything and clients
// that each open a new connection per message, for d; it returns the
// messages delivered.
func rawSMTP(ctx context.Context, clients int, d time.Duration) (int64, error) {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil }))
	srv.Domain = "bench.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	msg := []byte("From: a@bench.test\r\nTo: b@bench.test\r\nSubject: bench\r\n\r\n" + strings.Repeat("x", 900) + "\r\n")
	var sent atomic.Int64
	var firstErr atomic.Value
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := sendOne(ln.Addr().String(), msg); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, fmt.Errorf("raw smtp: %w", err)
	}
	return sent.Load(), nil
}

// sendOne is one plain SMTP transaction on a new connection with go-smtp's
// client: banner, EHLO, MAIL, RCPT, DATA, QUIT.
func sendOne(addr string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail("a@bench.test", []string{"b@bench.test"}, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

type discardSession struct{}

func (discardSession) Reset()                               {}
func (discardSession) Logout() error                        { return nil }
func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// pipeline runs the demo stack without scheduler and notifier, publishes
// the tests at once and waits for their results.
func pipeline(ctx context.Context, o benchOptions, fig *benchFigures) error {
	dir := o.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "scout-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var spec strings.Builder
	spec.WriteString("defaults: {interval: 1h, timeout: 2m, slow: 1m, retry_delay: 30s, retries: 1, quorum: 2}\nsites: [")
	for s := 0; s < o.sites; s++ {
		if s > 0 {
			spec.WriteString(", ")
		}
		fmt.Fprintf(&spec, "site-%d", s)
	}
	spec.WriteString("]\nchecks:\n")
	for c := 0; c < o.checks; c++ {
		fmt.Fprintf(&spec, "  - {id: bench-%d, customer: cust-%d, kind: roundtrip, target: probe%d@cust-%d.test}\n", c, c%10, c, c%10)
	}
	f, err := checks.Parse("bench.yaml", []byte(spec.String()))
	if err != nil {
		return err
	}
	fig.SitesChecks = fmt.Sprintf("%d sites x %d checks", o.sites, o.checks)
	ns, err := startNATS(filepath.Join(dir, "nats"), -1)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: 1}); err != nil {
		return err
	}
	keys, err := devKeys(filepath.Join(dir, "probe-keys"), f)
	if err != nil {
		return err
	}
	log, _ := platform.NewLogger(io.Discard, "error")
	// The monitor without scheduler and notifier: the benchmark publishes
	// the tests itself and reads the results from the stream.
	demo, st, err := newDemoStack(demoStackConfig(keys), stack.Deps{Checks: f, JS: js, Logger: log,
		Registerer: prometheus.NewRegistry(), Health: platform.NewHealth()}, nil, log)
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	werr := make(chan error, 2)
	go func() { werr <- demo.run(wctx) }()
	go func() { werr <- st.Run(wctx) }()

	// Read results as they are stored.
	results := make(chan jetstream.Msg, o.tests)
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"check.result.>"}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { results <- m })
	if err != nil {
		return err
	}
	defer cc.Stop()
	time.Sleep(500 * time.Millisecond) // consumers bound

	pub := platform.JetStreamPublisher{JS: js}
	sites := f.AllSites()
	publish := func(i int) error {
		now := time.Now().UTC()
		c := f.Checks[i%len(f.Checks)]
		id, err := events.NewTestID(rand.Reader)
		if err != nil {
			return err
		}
		ev := events.TestScheduled{V: events.SchemaVersion, TestID: id, CheckID: c.ID, Site: sites[(i/len(f.Checks))%len(sites)],
			Kind: events.KindRoundTrip, Attempt: 1, Reason: events.ReasonInterval, Slot: int64(i),
			ScheduledAt: now, NotAfter: now.Add(2 * time.Minute)}
		_, err = pub.Publish(ctx, ev)
		return err
	}
	// collect takes n results: the monitor-added latencies and round trips.
	collect := func(n int) (latencies, rtts []float64, ok int, err error) {
		deadline := time.After(o.maxWait)
		for got := 0; got < n; got++ {
			select {
			case m := <-results:
				var r events.CheckResult
				if err := json.Unmarshal(m.Data(), &r); err != nil {
					return nil, nil, 0, err
				}
				if r.Status == events.StatusOK || r.Status == events.StatusSlow {
					ok++
				}
				if md, err := m.Metadata(); err == nil && r.ReceivedAt != nil {
					latencies = append(latencies, float64(md.Timestamp.Sub(*r.ReceivedAt).Microseconds())/1000)
				}
				if r.RTTMS != nil {
					rtts = append(rtts, float64(*r.RTTMS))
				}
			case err := <-werr:
				return nil, nil, 0, fmt.Errorf("pipeline stopped: %v", err)
			case <-deadline:
				return nil, nil, 0, fmt.Errorf("pipeline: %d of %d results after %v", got, n, o.maxWait)
			}
		}
		return latencies, rtts, ok, nil
	}
	start := time.Now()
	for i := 0; i < o.tests; i++ {
		if err := publish(i); err != nil {
			return err
		}
	}
	latencies, rtts, ok, err := collect(o.tests)
	if err != nil {
		return err
	}
	fig.OK, fig.NotOK = ok, o.tests-ok
	elapsed := time.Since(start)
	fig.Tests = o.tests
	fig.PipelineSeconds = elapsed.Seconds()
	fig.PipelineTestsPerSec = float64(o.tests) / elapsed.Seconds()
	fig.MonitorLatencySamples = len(latencies)
	fig.LatencyP50MS, fig.LatencyP99MS = percentile(latencies, 0.5), percentile(latencies, 0.99)
	fig.RoundTripP50MS, fig.RoundTripP99MS = percentile(rtts, 0.5), percentile(rtts, 0.99)
	if o.pacedFor > 0 {
		// Half the saturated rate, evenly: what the monitor adds when it
		// is not the bottleneck.
		rate := fig.PipelineTestsPerSec / 2
		interval := time.Duration(float64(time.Second) / rate)
		n := int(o.pacedFor.Seconds() * rate)
		t0 := time.Now()
		go func() {
			for i := 0; i < n && ctx.Err() == nil; i++ {
				time.Sleep(time.Until(t0.Add(time.Duration(i) * interval)))
				if err := publish(o.tests + i); err != nil {
					return
				}
			}
		}()
		lat, _, _, err := collect(n)
		if err != nil {
			return err
		}
		fig.HalfRateTestsPerSec, fig.HalfRateSamples = rate, len(lat)
		fig.HalfRateLatencyP50, fig.HalfRateLatencyP99 = percentile(lat, 0.5), percentile(lat, 0.99)
	}
	stop()
	<-werr
	<-werr
	return nil
}

func percentile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
