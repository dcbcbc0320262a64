package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/spf13/cobra"
)

// `scout soak` runs the whole system as production runs it, one OS process
// per service, and hurts it while it works: see docs/soak.md.

type soakOptions struct {
	bin           string
	natsServer    string
	clickhouseSh  string
	dir           string
	keep          bool
	seed          int64
	duration      time.Duration
	warmup        time.Duration
	settle        time.Duration
	roundTrips    int
	serviceChecks int
	silenced      int
	interval      time.Duration
	chOutage      time.Duration
	stopFor       time.Duration
	chTCP, chHTTP int
}

func init() {
	commands = append(commands, func(getenv func(string) string) *cobra.Command {
		var o soakOptions
		cmd := &cobra.Command{
			Use:   "soak",
			Short: "Run every service as its own process under faults and check the books (docs/soak.md)",
			Long: `scout soak starts the real binaries of make build (scheduler, evaluator,
notifier, recorder, and a sender and a receiver for each of two sites) as separate
processes configured by environment, a nats-server process with JetStream, a
ClickHouse server (scripts/clickhouse.sh) on ports of its own, the demo customer
mail server with the reflector (scout demo-server) and a loopback fake of Twilio's
API that the notifier's twilio-go client reaches through HTTPS_PROXY.

After a warm-up it follows a plan drawn from --seed: it kills (-9) every service in
turn and starts it again, restarts NATS, stops ClickHouse for --clickhouse-outage,
stops (SIGSTOP) a receiver for --stop-receiver, and makes the customer silent for a
set of checks until their incidents must have opened. Then it lets the system settle
and keeps the books from the outside: the stream's test.scheduled and check.result
events, ClickHouse's rows, the fake's SMS and the incident KV. It prints one table
and exits 1 when a must fails (a lost result, a duplicated row, a wrong incident,
an SMS missing or twice).

Build first: make build && go build -o bin/nats-server github.com/nats-io/nats-server/v2
(make soak does both).`,
			Example: `  make soak                                  # the short form CI runs (about 5 minutes)
  scout soak --duration 30m --clickhouse-outage 60s --seed 7   # the long form`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runSoak(cmd.Context(), o, cmd.OutOrStdout())
			},
		}
		f := cmd.Flags()
		f.StringVar(&o.bin, "bin", "bin", "directory of the binaries of make build")
		f.StringVar(&o.natsServer, "nats-server", "", "nats-server binary (default: <bin>/nats-server)")
		f.StringVar(&o.clickhouseSh, "clickhouse-script", "scripts/clickhouse.sh", "the ClickHouse script")
		f.StringVar(&o.dir, "dir", "", "working directory: data, logs, generated files (default: a new temporary directory)")
		f.BoolVar(&o.keep, "keep", false, "keep the working directory (it is always kept when a must fails)")
		f.Int64Var(&o.seed, "seed", 1, "seed of the fault plan and of the silenced checks")
		f.DurationVar(&o.duration, "duration", 3*time.Minute, "length of the fault phase")
		f.DurationVar(&o.warmup, "warmup", 30*time.Second, "run without faults first")
		f.DurationVar(&o.settle, "settle", 0, "run without faults after the fault phase before counting (0: from the checks' timings)")
		f.IntVar(&o.roundTrips, "round-trips", 200, "round-trip checks")
		f.IntVar(&o.serviceChecks, "service-checks", 50, "service checks (SMTP, IMAP and POP3 in turn)")
		f.IntVar(&o.silenced, "silenced", 0, "checks the customer goes silent for (0: 2% of the round trips and 4% of the service checks, at least 1 each)")
		f.DurationVar(&o.interval, "interval", time.Minute, "interval of every check")
		f.DurationVar(&o.chOutage, "clickhouse-outage", 0, "how long ClickHouse is stopped (0: 20s, or 60s when --duration is 10m or more)")
		f.DurationVar(&o.stopFor, "stop-receiver", 30*time.Second, "how long a receiver is stopped (SIGSTOP)")
		f.IntVar(&o.chTCP, "clickhouse-tcp", 0, "ClickHouse's native port (0: a free one; never CI's 9000)")
		f.IntVar(&o.chHTTP, "clickhouse-http", 0, "ClickHouse's HTTP port (0: a free one; never CI's 8123)")
		return cmd
	})
}

// soakAckWait is the longest ack wait of the services' consumers (the
// recorder's, notifier's and senders': events.RecorderConsumer) and a
// margin: the longest a message held by a killed consumer waits before
// JetStream delivers it again.
var soakAckWait = events.RecorderConsumer().AckWait + 30*time.Second

// soakSites are the two monitoring sites.
var soakSites = []string{"soak-a", "soak-b"}

// soakServices are the service processes, in start order.
func soakServices() []string {
	s := []string{"recorder", "notifier", "evaluator"}
	for _, site := range soakSites {
		s = append(s, "receiver-"+site, "sender-"+site)
	}
	return append(s, "scheduler")
}

// soakRun is one soak: its processes, plan and books.
type soakRun struct {
	o          soakOptions
	out        io.Writer
	dir        string
	logs       string
	file       *checks.File
	keys       string
	procs      map[string]*soakProc
	order      []string // service names in start order
	nats       *soakProc
	demo       *soakProc
	natsURL    string
	chDir      string
	chDSN      string
	chHTTP     string // http://127.0.0.1:port
	twilio     *fakeTwilio
	demoCtl    string
	silenced   []string
	phones     map[string]string // phone -> check id
	chRows     chSeries
	faults     []soakFault // as carried out
	startedAt  time.Time
	faultEnd   time.Time
	cutoff     time.Time
	booksAt    time.Time // when the books were read for the table
	chPeakKB   int64
	chSampleMu sync.Mutex
}

func runSoak(ctx context.Context, o soakOptions, stdout io.Writer) (err error) {
	if o.natsServer == "" {
		o.natsServer = filepath.Join(o.bin, "nats-server")
	}
	for _, b := range append(soakServices(), "scout") {
		name := b
		if i := strings.Index(b, "-"); i > 0 && b != "scout" {
			name = b[:i]
		}
		if _, err := os.Stat(filepath.Join(o.bin, name)); err != nil {
			return fmt.Errorf("%s: %w (run make build first, or make soak)", filepath.Join(o.bin, name), err)
		}
	}
	if _, err := os.Stat(o.natsServer); err != nil {
		return fmt.Errorf("%s: %w (go build -o %s github.com/nats-io/nats-server/v2, or make soak)", o.natsServer, err, o.natsServer)
	}
	if o.chOutage == 0 {
		o.chOutage = 20 * time.Second
		if o.duration >= 10*time.Minute {
			o.chOutage = time.Minute
		}
	}
	if o.chTCP == 9000 || o.chHTTP == 8123 {
		return exitError{code: 2, err: errors.New("--clickhouse-tcp 9000 and --clickhouse-http 8123 are CI's ClickHouse: pick other ports")}
	}
	if o.roundTrips < 2 || o.serviceChecks < 3 {
		return exitError{code: 2, err: errors.New("at least 2 round-trip and 3 service checks")}
	}
	r := &soakRun{o: o, out: stdout, procs: map[string]*soakProc{}, phones: map[string]string{}}
	if o.dir == "" {
		if r.dir, err = os.MkdirTemp("", "scout-soak-"); err != nil {
			return err
		}
	} else {
		r.dir = o.dir
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return err
		}
	}
	r.logs = filepath.Join(r.dir, "logs")
	if err := os.MkdirAll(r.logs, 0o700); err != nil {
		return err
	}
	defer func() {
		r.shutdown()
		if err == nil && !o.keep {
			_ = os.RemoveAll(r.dir)
		} else {
			fmt.Fprintf(stdout, "working directory kept: %s (logs in %s)\n", r.dir, r.logs)
		}
	}()
	if err := r.setup(ctx); err != nil {
		return err
	}
	return r.run(ctx)
}

// loopbackPort asks the kernel for a free port on 127.0.0.1.
func loopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// soakCheckFile is the generated check file: round-trip checks to probe
// mailboxes of the demo MX and service checks of the demo listeners on
// host (demo.scout.test for the demo server, which then listens; 127.0.0.1
// and the listener's port for the services). Every check has a contact of
// its own, so that each SMS names its check by its number.
func soakCheckFile(o soakOptions, host string, ports map[string]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by scout soak\nsites: [%s]\ndefaults:\n  interval: %v\n", strings.Join(soakSites, ", "), o.interval)
	timeout := min(20*time.Second, o.interval/3)
	fmt.Fprintf(&b, "  retry_delay: 5s\n  retries: 1\n  quorum: 2\nchecks:\n")
	n := 0
	contact := func() {
		fmt.Fprintf(&b, "    contacts:\n      - name: on-call %d\n        phone: \"%s\"\n", n, soakPhone(n))
		n++
	}
	for i := range o.roundTrips {
		fmt.Fprintf(&b, "  - id: rt-%03d\n    customer: cust-%02d\n    kind: roundtrip\n    target: probe-%03d@cust-%02d.customers.test\n    timeout: %v\n    slow: %v\n",
			i, i%10, i, i%10, timeout, timeout*3/4)
		contact()
	}
	kinds := []string{events.KindSMTP, events.KindIMAP, events.KindPOP3}
	for i := range o.serviceChecks {
		kind := kinds[i%3]
		id := fmt.Sprintf("svc-%03d-%s", i, kind)
		fmt.Fprintf(&b, "  - id: %s\n    customer: cust-%02d\n    kind: %s\n    host: %s\n    tls: starttls\n    timeout: 10s\n    slow: 8s\n",
			id, i%10, kind, host)
		if p, ok := ports[id]; ok {
			fmt.Fprintf(&b, "    port: %d\n", p)
		}
		if kind != events.KindSMTP {
			fmt.Fprintf(&b, "    username: webscout\n    password_env: %s\n", demoPasswordEnv)
		}
		contact()
	}
	return b.String()
}

// soakPhone is the n-th contact number: UK numbers reserved for drama
// (Ofcom: 07700 900000 to 900999), room for 1000 checks.
func soakPhone(n int) string { return fmt.Sprintf("+447700900%03d", n%1000) }

func (r *soakRun) setup(ctx context.Context) error {
	o := r.o
	if o.roundTrips+o.serviceChecks > 1000 {
		return exitError{code: 2, err: errors.New("at most 1000 checks (one contact number each)")}
	}
	demoChecks := filepath.Join(r.dir, "checks.demo.yaml")
	if err := os.WriteFile(demoChecks, []byte(soakCheckFile(o, demoHost, nil)), 0o600); err != nil {
		return err
	}
	f, err := checks.Load(demoChecks)
	if err != nil {
		return fmt.Errorf("generated check file: %w", err)
	}
	r.file = f
	for i, c := range f.Checks {
		r.phones[soakPhone(i)] = c.ID
	}
	if r.keys, err = devKeys(filepath.Join(r.dir, "probe-keys"), f); err != nil {
		return err
	}
	r.silenced = pickSilenced(f, o.seed, o.silenced)

	// ClickHouse, on ports of its own.
	if o.chTCP == 0 {
		if o.chTCP, err = loopbackPort(); err != nil {
			return err
		}
	}
	if o.chHTTP == 0 {
		if o.chHTTP, err = loopbackPort(); err != nil {
			return err
		}
	}
	r.o = o
	r.chDir = filepath.Join(r.dir, "clickhouse")
	r.chHTTP = fmt.Sprintf("http://127.0.0.1:%d", o.chHTTP)
	fmt.Fprintf(r.out, "soak: working directory %s\n", r.dir)
	if r.chDSN, err = r.clickhouse(ctx, "start"); err != nil {
		return err
	}

	// NATS.
	natsPort, err := loopbackPort()
	if err != nil {
		return err
	}
	r.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	r.nats = newSoakProc("nats-server", o.natsServer, []string{"-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-js",
		"-sd", filepath.Join(r.dir, "jetstream"), "-n", "scout-soak"}, []string{"PATH=" + os.Getenv("PATH")}, r.logs)
	if err := r.startNATS(); err != nil {
		return err
	}
	prov := exec.CommandContext(ctx, filepath.Join(o.bin, "scout"), "provision", "--nats", r.natsURL, "--clickhouse", r.chDSN, "--timeout", "2m")
	prov.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := prov.CombinedOutput(); err != nil {
		return fmt.Errorf("scout provision: %w\n%s", err, out)
	}

	// The fake Twilio.
	sid, token := "AC"+strings.Repeat("5", 32), "soaktoken"+strconv.FormatInt(time.Now().UnixNano(), 36)
	if r.twilio, err = newFakeTwilio(sid, token); err != nil {
		return err
	}
	twilioCA := filepath.Join(r.dir, "twilio-ca.pem")
	if err := r.twilio.writeCA(twilioCA); err != nil {
		return err
	}

	// The demo customer.
	recvPorts := map[string]int{}
	demoArgs := []string{"demo-server", "--checks", demoChecks, "--keys-file", filepath.Join(r.dir, "probe-keys"),
		"--state", filepath.Join(r.dir, "demo-state.json"), "--log", filepath.Join(r.logs, "demo-server.json")}
	for _, site := range soakSites {
		if recvPorts[site], err = loopbackPort(); err != nil {
			return err
		}
		demoArgs = append(demoArgs, "--route", fmt.Sprintf("%s=127.0.0.1:%d", soakReturn(site), recvPorts[site]))
	}
	password := "demo" + strconv.FormatInt(rand.Int64(), 36)
	r.demo = newSoakProc("demo-server", filepath.Join(o.bin, "scout"), demoArgs,
		[]string{"PATH=" + os.Getenv("PATH"), demoPasswordEnv + "=" + password}, r.logs)
	if err := r.demo.start(); err != nil {
		return err
	}
	var st demoServerState
	if err := waitFor(ctx, 30*time.Second, func() bool {
		data, err := os.ReadFile(filepath.Join(r.dir, "demo-state.json"))
		return err == nil && json.Unmarshal(data, &st) == nil
	}); err != nil {
		return fmt.Errorf("demo-server did not start (see %s): %w", r.logs, err)
	}
	r.demoCtl = "http://" + st.Control
	checksFile := filepath.Join(r.dir, "checks.yaml")
	if err := os.WriteFile(checksFile, []byte(soakCheckFile(o, "127.0.0.1", st.Ports)), 0o600); err != nil {
		return err
	}
	if _, err := checks.Load(checksFile); err != nil {
		return fmt.Errorf("generated check file: %w", err)
	}

	// The services, configured as in production (docs/configuration.md).
	common := func(name string) ([]string, error) {
		port, err := loopbackPort()
		if err != nil {
			return nil, err
		}
		return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.dir, "SCOUT_NATS_URL=" + r.natsURL, "SCOUT_CHECKS_FILE=" + checksFile,
			"SCOUT_HTTP_ADDR=" + fmt.Sprintf("127.0.0.1:%d", port), "SCOUT_LOG_LEVEL=info", "SCOUT_NATS_PROVISION=false",
			"SCOUT_SHUTDOWN_TIMEOUT=5s"}, nil
	}
	add := func(name, binary string, env ...string) error {
		base, err := common(name)
		if err != nil {
			return err
		}
		r.procs[name] = newSoakProc(name, filepath.Join(o.bin, binary), nil, append(base, env...), r.logs)
		r.order = append(r.order, name)
		return nil
	}
	if err := add("recorder", "recorder", "SCOUT_CLICKHOUSE_DSN="+r.chDSN); err != nil {
		return err
	}
	if err := add("notifier", "notifier", "TWILIO_ACCOUNT_SID="+sid, "TWILIO_AUTH_TOKEN="+token, "TWILIO_FROM=+15555550199",
		"HTTPS_PROXY="+r.twilio.proxyURL(), "SSL_CERT_FILE="+twilioCA,
		"SCOUT_NOTIFIER_RETRY_INITIAL=2s", "SCOUT_NOTIFIER_RETRY_MAX=20s", "SCOUT_NOTIFIER_LEASE=1m"); err != nil {
		return err
	}
	if err := add("evaluator", "evaluator", "SCOUT_EVALUATOR_SUBMIT_GRACE=10s"); err != nil {
		return err
	}
	for _, site := range soakSites {
		if err := add("receiver-"+site, "receiver", "SCOUT_SITE="+site, "SCOUT_RECEIVER_LISTEN="+fmt.Sprintf("127.0.0.1:%d", recvPorts[site]),
			"SCOUT_RETURN_ADDRESSES="+soakReturn(site), "SCOUT_PROBE_KEYS="+r.keys); err != nil {
			return err
		}
		if err := add("sender-"+site, "sender", "SCOUT_SITE="+site, "SCOUT_RETURN_ADDRESS="+soakReturn(site), "SCOUT_PROBE_KEYS="+r.keys,
			"SCOUT_RELAY_ADDR="+st.SMTP, "SCOUT_RELAY_TLS=none", "SCOUT_SUBMIT_TIMEOUT=10s",
			demoPasswordEnv+"="+password, "SSL_CERT_FILE="+st.CAFile); err != nil {
			return err
		}
	}
	if err := add("scheduler", "scheduler"); err != nil {
		return err
	}
	return nil
}

func soakReturn(site string) string { return "scout@" + site + ".return.test" }

// pickSilenced draws the checks the customer goes silent for.
func pickSilenced(f *checks.File, seed int64, n int) []string {
	var rts, svcs []string
	for _, c := range f.Checks {
		if c.Kind == events.KindRoundTrip {
			rts = append(rts, c.ID)
		} else {
			svcs = append(svcs, c.ID)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	nrt, nsvc := max(1, len(rts)/50), max(1, len(svcs)/25)
	if n > 0 {
		nrt = max(1, n*len(rts)/(len(rts)+len(svcs)))
		nsvc = max(0, n-nrt)
	}
	rng.Shuffle(len(rts), func(i, j int) { rts[i], rts[j] = rts[j], rts[i] })
	rng.Shuffle(len(svcs), func(i, j int) { svcs[i], svcs[j] = svcs[j], svcs[i] })
	out := append(append([]string(nil), rts[:min(nrt, len(rts))]...), svcs[:min(nsvc, len(svcs))]...)
	slices.Sort(out)
	return out
}

// clickhouse runs scripts/clickhouse.sh start or stop on the soak's ports
// and directory; start returns the DSN.
func (r *soakRun) clickhouse(ctx context.Context, verb string) (string, error) {
	args := []string{verb, strconv.Itoa(r.o.chTCP), strconv.Itoa(r.o.chHTTP), r.chDir}
	if verb == "stop" {
		args = []string{verb, r.chDir}
	}
	cmd := exec.CommandContext(ctx, r.o.clickhouseSh, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", r.o.clickhouseSh, verb, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

func (r *soakRun) startNATS() error {
	if err := r.nats.start(); err != nil {
		return err
	}
	addr := strings.TrimPrefix(r.natsURL, "nats://")
	return waitFor(context.Background(), 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// waitFor polls ok every 100 ms until it holds or d passed.
func waitFor(ctx context.Context, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// sampleLoop notes every process's peak RSS and ClickHouse's row count
// once a second.
func (r *soakRun) sampleLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range r.allProcs() {
			p.sample()
		}
		if data, err := os.ReadFile(filepath.Join(r.chDir, "server.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				if kb := procHWM(pid); kb > 0 {
					r.chSampleMu.Lock()
					r.chPeakKB = max(r.chPeakKB, kb)
					r.chSampleMu.Unlock()
				}
			}
		}
		if n, err := r.chCount(ctx); err == nil {
			r.chRows.add(time.Now(), n)
		}
	}
}

func (r *soakRun) allProcs() []*soakProc {
	ps := []*soakProc{r.nats, r.demo}
	for _, n := range r.order {
		ps = append(ps, r.procs[n])
	}
	return ps
}

// chQuery runs a read-only query over ClickHouse's HTTP interface.
func (r *soakRun) chQuery(ctx context.Context, q string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.chHTTP+"/?database=scout&query="+url.QueryEscape(q), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("clickhouse: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

func (r *soakRun) chCount(ctx context.Context) (int64, error) {
	s, err := r.chQuery(ctx, "SELECT count() FROM check_results")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
}

// chSeries is ClickHouse's row count over time, sampled from the outside.
type chSeries struct {
	mu  sync.Mutex
	at  []time.Time
	val []int64
}

func (s *chSeries) add(t time.Time, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at, s.val = append(s.at, t), append(s.val, n)
}

// nextGrowth returns the first time after t at which the count grew
// beyond its last value at or before t.
func (s *chSeries) nextGrowth(t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := int64(-1)
	for i, at := range s.at {
		if !at.After(t) {
			base = s.val[i]
			continue
		}
		if base >= 0 && s.val[i] > base {
			return at, true
		}
		if base < 0 {
			base = s.val[i]
		}
	}
	return time.Time{}, false
}

func (r *soakRun) setBreak(ctx context.Context, check string, on bool) error {
	verb := "/mend"
	if on {
		verb = "/break"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.demoCtl+verb+"?check="+url.QueryEscape(check), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("demo-server %s %s: %s", verb, check, resp.Status)
	}
	return nil
}

// shutdown stops everything the soak started, services first.
func (r *soakRun) shutdown() {
	for i := len(r.order) - 1; i >= 0; i-- {
		r.procs[r.order[i]].close(10 * time.Second)
	}
	if r.demo != nil {
		r.demo.close(5 * time.Second)
	}
	if r.nats != nil {
		r.nats.close(10 * time.Second)
	}
	if r.chDir != "" {
		_, _ = r.clickhouse(context.Background(), "stop")
	}
}

func (r *soakRun) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.twilio.run(ctx)
	for _, n := range r.order {
		if err := r.procs[n].start(); err != nil {
			return err
		}
	}
	go r.sampleLoop(ctx)
	r.startedAt = time.Now()
	plan := soakPlan(r.o, r.silencedDetection())
	settle := r.o.settle
	if settle == 0 {
		settle = r.defaultSettle()
	}
	fmt.Fprintf(r.out, "soak: %d round-trip and %d service checks every %v at sites %s; seed %d\n",
		r.o.roundTrips, r.o.serviceChecks, r.o.interval, strings.Join(soakSites, ", "), r.o.seed)
	fmt.Fprintf(r.out, "soak: warm-up %v, faults for %v, settle %v; silenced checks: %s\n", r.o.warmup, r.o.duration, settle, strings.Join(r.silenced, ", "))
	for _, f := range plan.faults {
		fmt.Fprintf(r.out, "  plan +%-6v %s\n", f.at.Round(time.Second), f.describe())
	}
	fmt.Fprintf(r.out, "  plan +%-6v customer silent for the silenced checks, for %v\n", plan.breakAt.Round(time.Second), plan.breakFor.Round(time.Second))
	if err := sleepCtx(ctx, r.o.warmup); err != nil {
		return err
	}
	phase := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	var breakErr error
	go func() {
		defer wg.Done()
		breakErr = r.silence(ctx, phase, plan)
	}()
	for _, f := range plan.faults {
		if err := sleepCtx(ctx, time.Until(phase.Add(f.at))); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "  %s  %s\n", time.Now().UTC().Format("15:04:05"), f.describe())
		done := r.inflict(ctx, f)
		if done.err != nil {
			fmt.Fprintf(r.out, "  %s  %s\n", done.end.UTC().Format("15:04:05"), done.describe())
		}
		r.faults = append(r.faults, done)
	}
	if err := sleepCtx(ctx, time.Until(phase.Add(r.o.duration))); err != nil {
		return err
	}
	wg.Wait()
	if breakErr != nil {
		return breakErr
	}
	r.faultEnd = time.Now()
	fmt.Fprintf(r.out, "soak: faults over at %s; settling for %v\n", r.faultEnd.UTC().Format("15:04:05"), settle)
	if err := sleepCtx(ctx, settle); err != nil {
		return err
	}
	r.cutoff = r.faultEnd
	// The books balance once every redelivery came: a message a killed
	// consumer held comes again after its consumer's ack wait (2 minutes
	// for the recorder's and the notifier's), so they are read again every
	// 10 s until nothing is missing, at most soakAckWait after the settle
	// time; whatever is still missing then is lost.
	deadline := time.Now().Add(soakAckWait)
	var led *soakLedger
	for {
		var err error
		if led, err = r.ledger(ctx); err != nil {
			return err
		}
		v := led.verdict(r)
		if (v.lost == 0 && v.missingCH == 0 && len(led.kvOpen) == 0) || time.Now().After(deadline) {
			break
		}
		fmt.Fprintf(r.out, "soak: %s  books not balanced yet (%d without a result, %d results not in ClickHouse, %d incidents open): again in 10 s\n",
			time.Now().UTC().Format("15:04:05"), v.lost, v.missingCH, len(led.kvOpen))
		if err := sleepCtx(ctx, 10*time.Second); err != nil {
			return err
		}
	}
	r.booksAt = time.Now()
	cancel()
	for _, p := range r.allProcs() {
		p.sample()
	}
	ok := led.print(r.out, r)
	if !ok {
		return exitError{code: 1, err: errors.New("soak: a must failed (see the table)")}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// silencedDetection is the longest detection bound of the silenced checks.
func (r *soakRun) silencedDetection() time.Duration {
	var d time.Duration
	for _, id := range r.silenced {
		d = max(d, r.file.Lookup(id).DetectionBound())
	}
	return d
}

// defaultSettle covers one attempt of every check scheduled at the end of
// the faults (its send window, the evaluator's submit grace of 10 s, its
// timeout) and the recorder's catching up (30 s).
func (r *soakRun) defaultSettle() time.Duration {
	var d time.Duration
	for _, c := range r.file.Checks {
		d = max(d, c.Interval/4+10*time.Second+c.Timeout)
	}
	return d + 30*time.Second
}

// silence makes the customer silent for the silenced checks at breakAt,
// for breakFor.
func (r *soakRun) silence(ctx context.Context, phase time.Time, p soakPlanT) error {
	if err := sleepCtx(ctx, time.Until(phase.Add(p.breakAt))); err != nil {
		return err
	}
	for _, id := range r.silenced {
		if err := r.setBreak(ctx, id, true); err != nil {
			return err
		}
	}
	fmt.Fprintf(r.out, "  %s  customer silent for %d checks\n", time.Now().UTC().Format("15:04:05"), len(r.silenced))
	if err := sleepCtx(ctx, p.breakFor); err != nil {
		return err
	}
	for _, id := range r.silenced {
		if err := r.setBreak(ctx, id, false); err != nil {
			return err
		}
	}
	fmt.Fprintf(r.out, "  %s  customer answers again\n", time.Now().UTC().Format("15:04:05"))
	return nil
}

// soakFault is one fault of the plan, and when it was carried out.
type soakFault struct {
	at     time.Duration // offset in the fault phase
	kind   string        // kill, nats, clickhouse, stop
	target string        // service name (kill, stop)
	length time.Duration // down for (kill: until the restart)

	start, end time.Time // carried out
	err        error
}

func (f soakFault) describe() string {
	s := ""
	switch f.kind {
	case "kill":
		s = fmt.Sprintf("kill -9 %s, start it again after %v", f.target, f.length.Round(100*time.Millisecond))
	case "nats":
		s = fmt.Sprintf("restart nats-server (SIGTERM), down for %v", f.length.Round(100*time.Millisecond))
	case "clickhouse":
		s = fmt.Sprintf("stop ClickHouse for %v", f.length)
	case "stop":
		s = fmt.Sprintf("SIGSTOP %s for %v, then SIGCONT", f.target, f.length)
	}
	if f.err != nil {
		s += " — FAILED: " + f.err.Error()
	}
	return s
}

type soakPlanT struct {
	faults   []soakFault
	breakAt  time.Duration
	breakFor time.Duration
}

// soakPlan draws the fault plan from the seed: rounds in which every
// service is killed once (in a shuffled order), NATS restarted, ClickHouse
// stopped and a receiver stopped, one fault at a time with pauses of 5 to
// 15 s, as many rounds as fit in the fault phase (at least one). The
// customer goes silent early enough for its incidents to open and resolve
// within the phase and the settle time.
func soakPlan(o soakOptions, detection time.Duration) soakPlanT {
	rng := rand.New(rand.NewPCG(uint64(o.seed), 0xfa17))
	var p soakPlanT
	at := time.Duration(0)
	for n := 0; n == 0 || at < o.duration; n++ {
		var round []soakFault
		for _, s := range soakServices() {
			round = append(round, soakFault{kind: "kill", target: s, length: time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))})
		}
		round = append(round,
			soakFault{kind: "nats", length: time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))},
			soakFault{kind: "clickhouse", length: o.chOutage},
			soakFault{kind: "stop", target: "receiver-" + soakSites[rng.IntN(len(soakSites))], length: o.stopFor})
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		// The pauses between faults average 10 s, less (down to 2 s) when
		// the first round would not fit in the phase otherwise.
		var busy time.Duration
		for _, f := range round {
			busy += f.length
		}
		mean := 10 * time.Second
		if n == 0 {
			mean = min(mean, max(2*time.Second, (o.duration-busy)/time.Duration(len(round)+1)))
		}
		for _, f := range round {
			at += mean/2 + time.Duration(rng.Int64N(int64(mean)))
			if n > 0 && at+f.length >= o.duration {
				break
			}
			f.at = at
			p.faults = append(p.faults, f)
			at += f.length
		}
	}
	p.breakAt = 5*time.Second + time.Duration(rng.Int64N(int64(15*time.Second)))
	p.breakFor = detection + 20*time.Second
	return p
}

// inflict carries out one fault and returns when it is over (the service
// started again, NATS or ClickHouse back, the receiver continued).
func (r *soakRun) inflict(ctx context.Context, f soakFault) soakFault {
	f.start = time.Now()
	switch f.kind {
	case "kill":
		p := r.procs[f.target]
		p.stop(syscall.SIGKILL, 5*time.Second)
		_ = sleepCtx(ctx, f.length)
		f.err = p.start()
	case "nats":
		r.nats.stop(syscall.SIGTERM, 30*time.Second)
		_ = sleepCtx(ctx, f.length)
		f.err = r.startNATS()
	case "clickhouse":
		if _, f.err = r.clickhouse(ctx, "stop"); f.err == nil {
			_ = sleepCtx(ctx, f.length)
			_, f.err = r.clickhouse(ctx, "start")
		}
	case "stop":
		p := r.procs[f.target]
		if f.err = p.signal(syscall.SIGSTOP); f.err == nil {
			_ = sleepCtx(ctx, f.length)
			f.err = p.signal(syscall.SIGCONT)
		}
	}
	f.end = time.Now()
	return f
}

// readLines is a helper for TSV answers.
func readLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
