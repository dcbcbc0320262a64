package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/stack"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// The paths `scout bench --stack` measures through the loopback Postfix +
// Dovecot of scripts/mailstack.sh.
const (
	pathPipe          = "pipe"           // sender -> Postfix -> .forward -> scout-reflector -> Postfix -> receiver (SMTP)
	pathIMAPReceiver  = "imap-receiver"  // ... scout-reflector -> Postfix -> Maildir -> Dovecot -> receiver (IMAP)
	pathIMAPReflector = "imap-reflector" // sender -> Postfix -> Maildir -> Dovecot -> scout-reflector imap -> Postfix -> receiver (SMTP)
)

// stackBenchOptions are the flags of `scout bench --stack`.
type stackBenchOptions struct {
	paths     string
	step      time.Duration
	startRate float64
	growth    float64
	maxRate   float64
	checks    int
	stackDir  string
	script    string
	jsonPath  string
	// reflectorSMTP, when set, makes the pipe paths' reflector send its
	// reflections over SMTP to this host:port (output: smtp) instead of
	// running sendmail(8), for the run.
	reflectorSMTP string
	// imapFastPoll, when positive, replaces the receiver's and the IMAP-mode
	// reflector's fast poll interval (both default to 100 ms).
	imapFastPoll time.Duration
}

// stackStep is one rate step of one path.
type stackStep struct {
	Rate        float64 `json:"rate_per_second"`
	Tests       int     `json:"tests"`
	OK          int     `json:"ok"`
	Sustained   bool    `json:"sustained"`
	DrainMS     float64 `json:"drain_ms"` // after the last test was published, until every result was in
	RTTP50MS    float64 `json:"rtt_p50_ms"`
	RTTP99MS    float64 `json:"rtt_p99_ms"`
	ErrorP50MS  float64 `json:"rtt_error_p50_ms"`
	ErrorP99MS  float64 `json:"rtt_error_p99_ms"`
	ErrorN      int     `json:"rtt_error_samples"`
	OursMS      float64 `json:"cpu_ours_ms_per_round_trip"`
	ReflectorMS float64 `json:"cpu_reflector_ms_per_round_trip"`
	PostfixMS   float64 `json:"cpu_postfix_ms_per_round_trip"`
	DovecotMS   float64 `json:"cpu_dovecot_ms_per_round_trip"`
	MachineMS   float64 `json:"cpu_machine_ms_per_round_trip"`
}

// stackPath is what one path showed: its steps and the last sustained one.
type stackPath struct {
	Path       string      `json:"path"`
	ErrorOf    string      `json:"rtt_error_of"`
	Steps      []stackStep `json:"steps"`
	Saturation *stackStep  `json:"saturation,omitempty"`
}

// runStackBench measures each path: rate steps from startRate, growing by
// growth, each step long, until a step is not sustained (a result missing
// or not ok, or results still coming in more than a second after the
// step) or maxRate; then prints the figures at the last sustained step.
func runStackBench(ctx context.Context, o stackBenchOptions, stdout io.Writer) error {
	if o.startRate <= 0 || o.growth <= 1 || o.step < time.Second || o.checks < 1 {
		return exitError{code: 2, err: errors.New("--start-rate must be positive, --growth above 1, --step at least 1s, --stack-checks at least 1")}
	}
	if o.imapFastPoll != 0 && (o.imapFastPoll < 10*time.Millisecond || o.imapFastPoll > 10*time.Second) {
		return exitError{code: 2, err: fmt.Errorf("--imap-fast-poll %v: want 0 (the defaults) or between 10ms and 10s", o.imapFastPoll)}
	}
	if os.Geteuid() != 0 {
		return exitError{code: 2, err: errors.New("bench --stack configures Postfix and Dovecot (scripts/mailstack.sh): run it as root on Debian")}
	}
	fmt.Fprintf(stdout, "mail stack: %s start\n", o.script)
	if out, err := exec.CommandContext(ctx, "bash", o.script, "start").CombinedOutput(); err != nil {
		return fmt.Errorf("%s start: %v\n%s", o.script, err, out)
	}
	if o.reflectorSMTP != "" {
		restore, err := forwardOverSMTP(probeForward, o.reflectorSMTP)
		if err != nil {
			return err
		}
		defer restore()
		fmt.Fprintf(stdout, "pipe paths: the reflector sends over SMTP to %s (output: smtp), not sendmail(8)\n", o.reflectorSMTP)
	}
	var all []stackPath
	for _, p := range strings.Split(o.paths, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case pathPipe, pathIMAPReceiver, pathIMAPReflector:
		default:
			return exitError{code: 2, err: fmt.Errorf("--paths: %q is not pipe, imap-receiver or imap-reflector", p)}
		}
		res, err := benchPath(ctx, o, p, stdout)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		all = append(all, res)
	}
	fmt.Fprintf(stdout, "\n%-15s %10s %9s %9s %12s %12s %9s %9s %9s %9s\n", "path", "rt/min", "rtt p50", "rtt p99",
		"error p50", "error p99", "ours", "postfix", "dovecot", "machine")
	for _, r := range all {
		s := r.Saturation
		if s == nil {
			if len(r.Steps) > 0 && r.Steps[0].OK == 0 {
				fmt.Fprintf(stdout, "%-15s no round trip was ok: see Postfix's log (/var/log/scout-mailstack/postfix.log)\n", r.Path)
				continue
			}
			fmt.Fprintf(stdout, "%-15s no step sustained (start lower: --start-rate)\n", r.Path)
			continue
		}
		fmt.Fprintf(stdout, "%-15s %10.0f %7.0fms %7.0fms %10.1fms %10.1fms %7.1fms %7.1fms %7.1fms %7.1fms\n", r.Path, s.Rate*60,
			s.RTTP50MS, s.RTTP99MS, s.ErrorP50MS, s.ErrorP99MS, s.OursMS+s.ReflectorMS, s.PostfixMS, s.DovecotMS, s.MachineMS)
		if r.Path == pathPipe && s.ErrorN == 0 {
			fmt.Fprintf(stdout, "%-15s no error figure: Postfix gave short queue ids (set enable_long_queue_ids = yes, as scripts/mailstack.sh does)\n", "")
		}
	}
	fmt.Fprintln(stdout, `
rt/min: round trips per minute at the highest rate sustained (every test ok, results in within 1 s of
  the step's end). CPU per round trip, from /proc: ours = this process (sender, receiver, evaluator,
  NATS) + scout-reflector (the .forward runs, charged to Postfix's local(8) as children, or the imap
  process); postfix and dovecot = their processes; machine = every core's busy time (other work on the
  machine included).
error: the round trip against the mail server's own record (docs/capacity.md, "Real mail servers"):
  pipe: the receiver's end of DATA is the moment Postfix delivered to it, so the end is exact; the
  figure is the start side: the probe's arrival at Postfix (the time in its long queue id, to the
  microsecond) minus started_at, our connection or transaction ahead of it;
  imap-receiver: received_at minus the moment Postfix renamed the reflection into the Maildir (inotify);
  imap-reflector: reflected_at minus the moment Postfix renamed the probe into the reflector's Maildir,
  the reflector's wait for its fast poll's scan (or Dovecot's IDLE), which the round trip includes.`)
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// probeForward is the .forward of the mail stack's probe mailbox
// (scripts/mailstack.sh installs docs/reflector.md's line there).
const probeForward = "/home/webscout/.forward"

// forwardOverSMTP adds --smtp=addr --smtp-tls=none and the probe
// mailbox to the reflector's command in the .forward file at path, so that
// its reflections leave over SMTP (docs/reflector.md, section 4) instead
// of through sendmail(8); restore puts the documented line back. addr must
// be a loopback host:port; the file must hold the documented line.
func forwardOverSMTP(path, addr string) (restore func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, exitError{code: 2, err: fmt.Errorf("--reflector-smtp %q: want a loopback host:port such as 127.0.0.1:25", addr)}
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	line := strings.TrimSpace(string(orig))
	if !strings.HasSuffix(line, `"`) || !strings.Contains(line, "scout-reflector") {
		return nil, fmt.Errorf("%s: %q is not the documented reflector line", path, line)
	}
	// SMTP output needs an envelope sender: the probe mailbox's own address.
	line = strings.TrimSuffix(line, `"`) + " --smtp=" + addr + " --smtp-tls=none --mailbox=webscout@acme.example\"\n"
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		return nil, err
	}
	return func() { _ = os.WriteFile(path, orig, 0o644) }, nil
}

// benchPath runs the rate steps of one path on a fresh monitor.
func benchPath(ctx context.Context, o stackBenchOptions, path string, stdout io.Writer) (stackPath, error) {
	res := stackPath{Path: path}
	dir, err := os.MkdirTemp("", "scout-bench-stack-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	keySpec, err := os.ReadFile(filepath.Join(o.stackDir, "probe-keys"))
	if err != nil {
		return res, fmt.Errorf("the mail stack's probe key: %w", err)
	}
	pem, err := os.ReadFile(filepath.Join(o.stackDir, "cert.pem"))
	if err != nil {
		return res, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	if out, err := exec.CommandContext(ctx, "postsuper", "-d", "ALL").CombinedOutput(); err != nil {
		return res, fmt.Errorf("postsuper -d ALL: %v: %s", err, out)
	}

	target, ret, maildir := "webscout@acme.example", "return@monitor.example", ""
	switch path {
	case pathPipe:
		res.ErrorOf = "Postfix's arrival (long queue id) - started_at"
	case pathIMAPReceiver:
		ret, maildir, res.ErrorOf = "scoutreturn@imap.monitor.example", "/home/scoutreturn/Maildir", "received_at - Maildir delivery"
	case pathIMAPReflector:
		target, maildir, res.ErrorOf = "imapscout@acme.example", "/home/imapscout/Maildir", "reflected_at - Maildir delivery"
		if out, err := exec.CommandContext(ctx, "doveadm", "-c", filepath.Join(o.stackDir, "dovecot.conf"), "expunge", "-u", "imapscout", "mailbox", "INBOX", "all").CombinedOutput(); err != nil {
			return res, fmt.Errorf("doveadm expunge: %v: %s", err, out)
		}
	}
	var spec strings.Builder
	spec.WriteString("sites: [bench]\ndefaults: {interval: 1h, timeout: 60s, slow: 30s, retries: 0, quorum: 1}\nchecks:\n")
	for i := range o.checks {
		fmt.Fprintf(&spec, "  - {id: stack-%d, customer: acme, kind: roundtrip, target: %s}\n", i, target)
	}
	f, err := checks.Parse("bench-stack.yaml", []byte(spec.String()))
	if err != nil {
		return res, err
	}
	ns, err := startNATS(filepath.Join(dir, "nats"), -1)
	if err != nil {
		return res, err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: 1}); err != nil {
		return res, err
	}
	log, _ := platform.NewLogger(io.Discard, "error")
	cfg := stack.Config{Sites: []string{"bench"}, ProbeKeys: strings.TrimSpace(string(keySpec)),
		ReturnAddress: func(string) string { return ret }, Sender: sender.Defaults(), Evaluator: evaluator.Defaults()}
	cfg.Sender.RelayAddr, cfg.Sender.RelayTLS, cfg.Sender.HeloName = "127.0.0.1:25", "starttls", "scout.monitor.example"
	cfg.Sender.SubmitTimeout = 30 * time.Second
	cfg.Evaluator.Settle = 200 * time.Millisecond
	rcfg := receiver.Defaults()
	rcfg.Timeout = time.Minute
	if path == pathIMAPReceiver {
		pw, err := os.ReadFile(filepath.Join(o.stackDir, "return-imap-password"))
		if err != nil {
			return res, err
		}
		rcfg.Mode, rcfg.IMAPServer, rcfg.IMAPPort, rcfg.IMAPTLS = receiver.ModeIMAP, "127.0.0.1", 143, receiver.IMAPTLSStartTLS
		rcfg.IMAPUser, rcfg.IMAPPassword = "scoutreturn", receiver.Secret(strings.TrimSpace(string(pw)))
		if o.imapFastPoll > 0 {
			rcfg.IMAPFastPoll = o.imapFastPoll
		}
	}
	cfg.Receiver = &rcfg
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	st, err := stack.New(cfg, stack.Deps{Checks: f, JS: js, Logger: log, Registerer: prometheus.NewRegistry(), Health: platform.NewHealth(),
		SenderDeps:   func(_ string, d *sender.Deps) { d.RelayTLS = tc },
		ReceiverDeps: func(_ string, d *receiver.Deps) { d.IMAPTLS = tc }})
	if err != nil {
		return res, err
	}
	if a := st.Receivers["bench"].Addr(); a != nil {
		_, port, _ := net.SplitHostPort(a.String())
		if out, err := exec.CommandContext(ctx, "bash", o.script, "route", port).CombinedOutput(); err != nil {
			return res, fmt.Errorf("route the return domain: %v: %s", err, out)
		}
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	werr := make(chan error, 1)
	go func() { werr <- st.Run(wctx) }()
	var refl *exec.Cmd
	if path == pathIMAPReflector {
		if refl, err = startIMAPReflector(wctx, o.stackDir, dir, o.imapFastPoll); err != nil {
			return res, err
		}
		defer func() { _ = refl.Process.Signal(os.Interrupt); _ = refl.Wait() }()
	}
	var deliveries *maildirWatch
	if maildir != "" {
		if deliveries, err = watchMaildir(filepath.Join(maildir, "new")); err != nil {
			return res, err
		}
		defer deliveries.close()
	}
	results, err := followResults(ctx, js)
	if err != nil {
		return res, err
	}
	defer results.stop()
	time.Sleep(time.Second) // consumers bound, the IMAP sessions in

	pub := platform.JetStreamPublisher{JS: js}
	fmt.Fprintf(stdout, "%s: %d checks, steps of %v from %.1f tests/s\n", path, o.checks, o.step, o.startRate)
	for rate := o.startRate; rate <= o.maxRate; rate *= o.growth {
		s, err := runStep(ctx, path, rate, o.step, f, pub, results, deliveries, refl, werr)
		if err != nil {
			return res, err
		}
		res.Steps = append(res.Steps, s)
		fmt.Fprintf(stdout, "  %6.1f/s: %d/%d ok, drained %.0f ms, rtt p50 %.0f ms p99 %.0f ms, error p50 %.1f ms p99 %.1f ms (n=%d), cpu/rt ours %.1f + reflector %.1f, postfix %.1f, dovecot %.1f, machine %.1f ms\n",
			rate, s.OK, s.Tests, s.DrainMS, s.RTTP50MS, s.RTTP99MS, s.ErrorP50MS, s.ErrorP99MS, s.ErrorN, s.OursMS, s.ReflectorMS, s.PostfixMS, s.DovecotMS, s.MachineMS)
		if !s.Sustained {
			break
		}
		res.Saturation = &res.Steps[len(res.Steps)-1]
	}
	return res, nil
}

// runStep publishes tests at rate for d, waits for their results and
// measures the step.
func runStep(ctx context.Context, path string, rate float64, d time.Duration, f *checks.File, pub platform.JetStreamPublisher,
	results *resultFeed, deliveries *maildirWatch, refl *exec.Cmd, werr <-chan error) (stackStep, error) {
	s := stackStep{Rate: rate}
	cpu := startCPUMeter(refl)
	defer cpu.end()
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	ids := map[string]bool{}
	for i := 0; time.Since(start) < d; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		id, err := events.NewTestID(rand.Reader)
		if err != nil {
			return s, err
		}
		now := time.Now().UTC()
		c := f.Checks[i%len(f.Checks)]
		ev := events.TestScheduled{V: events.SchemaVersion, TestID: id, CheckID: c.ID, Site: "bench", Kind: events.KindRoundTrip,
			Attempt: 1, Reason: events.ReasonInterval, Slot: now.UnixNano(), ScheduledAt: now, NotAfter: now.Add(time.Minute)}
		if _, err := pub.Publish(ctx, ev); err != nil {
			return s, err
		}
		ids[id] = true
	}
	published := time.Now()
	s.Tests = len(ids)
	got := map[string]events.CheckResult{}
	deadline := time.After(90 * time.Second)
	for len(got) < len(ids) {
		select {
		case r := <-results.ch:
			if ids[r.TestID] {
				got[r.TestID] = r
			}
		case err := <-werr:
			return s, fmt.Errorf("the monitor stopped: %v", err)
		case <-deadline:
			s.DrainMS = float64(time.Since(published).Milliseconds())
			goto done
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
	s.DrainMS = float64(time.Since(published).Microseconds()) / 1000
done:
	used := cpu.end()
	var rtts, errs []float64
	for id, r := range got {
		if r.Status != events.StatusOK && r.Status != events.StatusSlow {
			continue
		}
		s.OK++
		if r.RTTMS != nil {
			rtts = append(rtts, float64(*r.RTTMS))
		}
		switch path {
		case pathPipe:
			if r.Evidence != nil && r.Evidence.Submission != nil {
				if at, ok := postfixArrival(r.Evidence.Submission.QueueID); ok {
					errs = append(errs, float64(at.Sub(r.StartedAt).Microseconds())/1000)
				}
			}
		case pathIMAPReceiver:
			if at, ok := deliveries.at(id); ok && r.ReceivedAt != nil {
				errs = append(errs, float64(r.ReceivedAt.Sub(at).Microseconds())/1000)
			}
		case pathIMAPReflector:
			if at, ok := deliveries.at(id); ok && r.ReflectedAt != nil {
				errs = append(errs, float64(r.ReflectedAt.Sub(at).Microseconds())/1000)
			}
		}
	}
	s.Sustained = s.OK == s.Tests && s.DrainMS < 1000
	s.RTTP50MS, s.RTTP99MS = percentile(rtts, 0.5), percentile(rtts, 0.99)
	s.ErrorP50MS, s.ErrorP99MS, s.ErrorN = percentile(errs, 0.5), percentile(errs, 0.99), len(errs)
	if n := float64(max(s.OK, 1)); s.OK > 0 {
		per := func(seconds float64) float64 { return seconds * 1000 / n }
		s.OursMS, s.ReflectorMS = per(used.self), per(used.reflector)
		s.PostfixMS, s.DovecotMS, s.MachineMS = per(used.postfix), per(used.dovecot), per(used.machine)
	}
	return s, nil
}

// resultFeed is every check.result stored from now on.
type resultFeed struct {
	ch   chan events.CheckResult
	stop func()
}

func followResults(ctx context.Context, js jetstream.JetStream) (*resultFeed, error) {
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectCheckResult + ".>"}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, err
	}
	feed := &resultFeed{ch: make(chan events.CheckResult, 100000)}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if r, err := events.Decode[events.CheckResult](m.Data()); err == nil {
			feed.ch <- r
		}
	})
	if err != nil {
		return nil, err
	}
	feed.stop = cc.Stop
	return feed, nil
}

// startIMAPReflector runs scout-reflector in imap mode on imapscout's
// mailbox, as TestIMAPModeAgainstDovecot does (docs/reflector.md,
// section 3).
func startIMAPReflector(ctx context.Context, stackDir, dir string, fastPoll time.Duration) (*exec.Cmd, error) {
	keys := filepath.Join(dir, "reflector-keys")
	b, err := os.ReadFile(filepath.Join(stackDir, "probe-keys"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keys, b, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "/usr/local/bin/scout-reflector", imapReflectorArgs(stackDir, keys, filepath.Join(dir, "reflector-state"), fastPoll)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("scout-reflector imap: %w", err)
	}
	return cmd, nil
}

// imapReflectorArgs is the command line of startIMAPReflector's
// scout-reflector: its key file and state directory, the mail stack's
// passwords and certificate in stackDir, and --fast-poll when fastPoll is
// positive.
func imapReflectorArgs(stackDir, keys, stateDir string, fastPoll time.Duration) []string {
	args := []string{"imap",
		"--key-file=" + keys, "--state-dir=" + stateDir,
		"--mailbox=imapscout@acme.example", "--imap=127.0.0.1:143", "--imap-tls=starttls", "--imap-user=imapscout",
		"--imap-password-file=" + filepath.Join(stackDir, "imap-password"),
		"--smtp=127.0.0.1:25", "--tls-ca-file=" + filepath.Join(stackDir, "cert.pem")}
	if fastPoll > 0 {
		args = append(args, "--fast-poll="+fastPoll.String())
	}
	return args
}

// maildirWatch records, with inotify, when Postfix renamed each message
// into a Maildir's new/ (the moment of delivery, on this machine's clock)
// and the test id of the probe it carries.
type maildirWatch struct {
	fd   int
	mu   sync.Mutex
	byID map[string]time.Time
}

func watchMaildir(dir string) (*maildirWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CREATE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify %s: %w", dir, err)
	}
	w := &maildirWatch{fd: fd, byID: map[string]time.Time{}}
	go w.loop(dir)
	return w, nil
}

func (w *maildirWatch) loop(dir string) {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(w.fd, buf)
		if err != nil || n <= 0 {
			return
		}
		at := time.Now()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off])) //nolint:gosec // the kernel's inotify_event layout
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				continue // taken already
			}
			if r, err := probemail.ParseReturned(data); err == nil && r.TestID != "" {
				w.mu.Lock()
				if _, seen := w.byID[r.TestID]; !seen {
					w.byID[r.TestID] = at
				}
				w.mu.Unlock()
			}
		}
	}
}

func (w *maildirWatch) at(id string) (time.Time, bool) {
	if w == nil {
		return time.Time{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.byID[id]
	return t, ok
}

func (w *maildirWatch) close() { unix.Close(w.fd) }

// cpuSample is CPU seconds used.
type cpuSample struct {
	self, reflector, postfix, dovecot, machine float64
}

// cpuMeter adds up the CPU time of this process, scout-reflector, Postfix
// and Dovecot over a step from /proc, sampled every 100 ms: each process
// (by pid and start time) counts what it used between two samples, so a
// process that exits (Postfix ends a local(8) after 100 deliveries)
// takes along only what it used since the last sample, instead of
// subtracting its whole life as a start-and-end difference did. The
// .forward runs of scout-reflector are too short to sample; they count
// when the local(8) that started them reaped them (its cutime), with the
// sendmail and postdrop they ran.
type cpuMeter struct {
	refl     *exec.Cmd
	last     map[string]cpuSample // by "pid start-time"
	total    cpuSample
	machine0 float64
	own      float64 // the meter's own sampling (its thread's CPU), not ours
	stop     chan struct{}
	done     chan cpuSample
	once     sync.Once
	result   cpuSample
}

func startCPUMeter(refl *exec.Cmd) *cpuMeter {
	m := &cpuMeter{refl: refl, stop: make(chan struct{}), done: make(chan cpuSample, 1)}
	m.machine0 = machineCPU()
	m.sample(true)
	go func() {
		// The sampling runs on a thread of its own, whose CPU is
		// taken off this process's.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t0 := threadCPU()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.sample(false)
			case <-m.stop:
				m.sample(false)
				m.total.machine = machineCPU() - m.machine0
				m.total.self -= threadCPU() - t0
				m.done <- m.total
				return
			}
		}
	}()
	return m
}

// end stops the meter and returns the CPU seconds used since its start;
// later calls return the same.
func (m *cpuMeter) end() cpuSample {
	m.once.Do(func() {
		close(m.stop)
		m.result = <-m.done
	})
	return m.result
}

// threadCPU is the CPU seconds of the calling thread (getrusage(2)
// RUSAGE_THREAD).
func threadCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// sample reads every process; baseline only records where each stands.
func (m *cpuMeter) sample(baseline bool) {
	const hz = 100 // USER_HZ on Linux
	now := map[string]cpuSample{}
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		st, ok := procStat(pid)
		if !ok {
			continue
		}
		own, children := (st.utime+st.stime)/hz, (st.cutime+st.cstime)/hz
		var c cpuSample
		switch {
		case pid == self:
			c.self = own
		case m.refl != nil && m.refl.Process != nil && pid == strconv.Itoa(m.refl.Process.Pid):
			c.reflector = own
		case st.comm == "local":
			c.postfix, c.reflector = own, children // the .forward runs it reaped
		case st.comm == "sendmail" || st.comm == "postdrop":
			// counted with the reflector run that started them, once reaped
		case isPostfix(st.comm, pid):
			c.postfix = own
		case strings.HasPrefix(st.comm, "dovecot") || st.comm == "imap" || st.comm == "imap-login" || st.comm == "pop3" ||
			st.comm == "auth" || st.comm == "config" || st.comm == "anvil" || st.comm == "log" || st.comm == "stats":
			c.dovecot = own
		default:
			continue
		}
		key := pid + " " + st.start
		now[key] = c
		if baseline {
			continue
		}
		prev := m.last[key] // zero for a process started since the last sample
		m.total.self += c.self - prev.self
		m.total.reflector += c.reflector - prev.reflector
		m.total.postfix += c.postfix - prev.postfix
		m.total.dovecot += c.dovecot - prev.dovecot
	}
	m.last = now
}

// machineCPU is every core's busy time so far, in seconds (/proc/stat).
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100
}

type procStatus struct {
	comm                         string
	utime, stime, cutime, cstime float64
	start                        string // start time after boot, in clock ticks
}

// procStat reads /proc/<pid>/stat (proc(5)).
func procStat(pid string) (procStatus, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procStatus{}, false
	}
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return procStatus{}, false
	}
	f := strings.Fields(string(b[closing+1:])) // from field 3 (state) on
	if len(f) < 20 {
		return procStatus{}, false
	}
	num := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v }
	// fields 14-17 (1-based) are utime, stime, cutime, cstime: index 11-14 here.
	// field 22 is starttime: index 19.
	return procStatus{comm: string(b[open+1 : closing]), utime: num(11), stime: num(12), cutime: num(13), cstime: num(14), start: f[19]}, true
}

// isPostfix reports whether a process is one of Postfix's (its daemons
// run from /usr/lib/postfix/sbin).
func isPostfix(comm, pid string) bool {
	switch comm {
	case "master", "sendmail", "postdrop", "postfix":
		return true
	}
	exe, err := os.Readlink("/proc/" + pid + "/exe")
	return err == nil && strings.HasPrefix(exe, "/usr/lib/postfix/")
}
