package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/cmd/internal/flaghint"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/checktarget"
	"github.com/emailscout/emailscout/pkg/probe/probers"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, func(getenv func(string) string) *cobra.Command {
		return newCheckCmd(getenv, os.LookupEnv, os.Stdin)
	})
}

// Exit codes of `scout check`, those of a Nagios plugin (Monitoring
// Plugins Development Guidelines, "Plugin Return Codes").
const (
	nagiosOK       = 0 // ok
	nagiosWarning  = 1 // slow, degraded (a certificate expiring, a temporary refusal)
	nagiosCritical = 2 // failed, timeout
	nagiosUnknown  = 3 // the check could not run: bad arguments, no password, our OAuth credential refused
)

// nagiosCode maps a service-check status (probe.ServiceStatus) to its exit
// code.
func nagiosCode(status string) int {
	switch status {
	case events.StatusOK:
		return nagiosOK
	case events.StatusSlow, events.StatusDegraded:
		return nagiosWarning
	case events.StatusFailed, events.StatusTimeout:
		return nagiosCritical
	}
	return nagiosUnknown
}

var nagiosWords = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// checkOptions are the flags of `scout check`.
type checkOptions struct {
	startTLS, implicitTLS, plain bool
	login, passwordEnv           string
	passwordStdin                bool
	timeout, slow                time.Duration
	certWarningDays              int
	caFile, helo, expectGreeting string
	mailbox                      string
	checksFile                   string
	verbose, asJSON              bool
}

// newCheckCmd is `scout check`: one service check run by hand with the
// sender's own prober (pkg/probe/probers) and judged as the evaluator
// judges it (probe.ServiceStatus). lookupEnv reads the password variable,
// stdin the --password-stdin password.
func newCheckCmd(getenv func(string) string, lookupEnv func(string) (string, bool), stdin io.Reader) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check (smtp|imap|pop3) HOST[:PORT] [flags] | check --checks FILE CHECK_ID",
		Short: "Run one SMTP, IMAP or POP3 check now and print its verdict, phase timings and certificate (Nagios exit codes)",
		Long: `check runs the sender's own prober once against HOST and prints what the
evaluator would make of it: the verdict, the time of each phase (dns, connect,
greeting, tls, capabilities, auth, mailbox), the certificate, and on failure
the phase, the error and the server's reply. -v adds the whole dialogue,
credentials masked.

The port defaults to the kind's standard one for the TLS mode (smtp 25/465,
imap 143/993, pop3 110/995). The TLS mode is --starttls (the default, except on
ports 465, 993 and 995, which mean --tls), --tls (implicit TLS, RFC 8314) or
--plain. With --login USER the check logs in; the password is read from the
variable --password-env names (default SCOUT_CHECK_PASSWORD) or, with
--password-stdin, from the first line of standard input; it is never a flag.

With --checks FILE, CHECK_ID is a service check of that check file, run
exactly as the sender runs it: its host, port, TLS mode, login (password_env
or oauth block, read from this environment), expect_greeting, timeout, slow
and cert_warning_days.

Exit status, as a Nagios plugin's: 0 OK; 1 WARNING (slow, a certificate that
expires within --cert-warning-days, a temporary 4xx refusal); 2 CRITICAL
(failed, timed out); 3 UNKNOWN (the check could not run: bad arguments, no
password, an OAuth credential refused). The first line of the output is the
plugin's status line with performance data after "|".`,
		Example: `  scout check smtp mx1.acme.example
  scout check imap imap.acme.example:993 --login webscout@acme.example -v
  SCOUT_CHECK_PASSWORD=... scout check pop3 127.0.0.1:1110 --plain --login webscout
  scout check --checks checks.yaml acme-imap --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			name, target, timeout, slow, err := o.target(args, lookupEnv, stdin)
			if err != nil {
				// The plugin's UNKNOWN, on standard output as a monitoring
				// system reads it.
				if o.asJSON {
					_ = json.NewEncoder(out).Encode(checkReport{Status: "unknown", ExitCode: nagiosUnknown, Error: err.Error()})
				} else {
					fmt.Fprintf(out, "CHECK UNKNOWN - %s\n", err)
				}
				return exitError{code: nagiosUnknown, err: errSilent}
			}
			pctx, cancel := context.WithTimeout(ctx, timeout)
			res := probers.For(name)(pctx, target)
			cancel()
			status := probe.ServiceStatus(res.Class, res.Timings.TotalMS, slow)
			code := nagiosCode(status)
			if o.asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(checkReportOf(res, target, status, code, o.verbose)); err != nil {
					return err
				}
			} else {
				printCheck(out, res, target, status, code, slow, timeout, o.verbose)
			}
			if code != nagiosOK {
				return exitError{code: code, err: errSilent}
			}
			return nil
		},
	}
	cmd.SilenceUsage, cmd.SilenceErrors = true, true // the root's, for tests that run the command alone
	f := cmd.Flags()
	f.BoolVar(&o.startTLS, "starttls", false, "upgrade with STARTTLS/STLS before anything else (the default, except on 465, 993, 995)")
	f.BoolVar(&o.implicitTLS, "tls", false, "implicit TLS from the first byte (RFC 8314; the default on 465, 993, 995)")
	f.BoolVar(&o.plain, "plain", false, "no TLS at all")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exitError{code: nagiosUnknown, err: flaghint.Suggest(c.Flags(), err)}
	})
	f.StringVar(&o.login, "login", "", "log in as this user (SMTP AUTH, IMAP LOGIN, POP3 USER/PASS)")
	f.StringVar(&o.passwordEnv, "password-env", "SCOUT_CHECK_PASSWORD", "the variable that holds the --login password")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "read the --login password from the first line of standard input")
	f.DurationVar(&o.timeout, "timeout", checks.DefaultService.Timeout, "the whole dialogue's deadline (a service check's default)")
	f.DurationVar(&o.slow, "slow", checks.DefaultService.Slow, "a dialogue that takes this long or longer is slow: WARNING (0: never)")
	f.IntVar(&o.certWarningDays, "cert-warning-days", checks.DefaultCertWarningDays, "a certificate expiring within this many days is WARNING (0: never)")
	f.StringVar(&o.caFile, "ca", "", "PEM file of CA certificates trusted besides the system's (a private CA)")
	f.StringVar(&o.helo, "helo", getenv("SCOUT_SENDER_HELO"), "SMTP EHLO name (default $SCOUT_SENDER_HELO, else localhost)")
	f.StringVar(&o.expectGreeting, "expect-greeting", "", "regular expression the server's greeting must match")
	f.StringVar(&o.mailbox, "mailbox", "", "IMAP mailbox examined after the login (default INBOX)")
	f.StringVar(&o.checksFile, "checks", "", "run CHECK_ID of this check file as the sender would")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print the whole dialogue (credentials masked)")
	f.BoolVar(&o.asJSON, "json", false, "print the result as JSON")
	return cmd
}

// errSilent is the error of a check that ran and did not pass: its
// output said everything, and the exit code tells the rest.
var errSilent = errors.New("")

// target builds the probe target from the arguments: the kind, the
// target, the deadline and the slow threshold.
func (o checkOptions) target(args []string, lookupEnv func(string) (string, bool), stdin io.Reader) (string, probe.Target, time.Duration, time.Duration, error) {
	if o.checksFile != "" {
		return o.fromFile(args, lookupEnv)
	}
	if len(args) != 2 {
		return "", probe.Target{}, 0, 0, errors.New("give the kind (smtp, imap or pop3) and HOST[:PORT], or --checks FILE CHECK_ID")
	}
	if n := btoi(o.startTLS) + btoi(o.implicitTLS) + btoi(o.plain); n > 1 {
		return "", probe.Target{}, 0, 0, errors.New("give one of --starttls, --tls and --plain")
	}
	kind := strings.ToLower(args[0])
	if probers.For(kind) == nil {
		return "", probe.Target{}, 0, 0, fmt.Errorf("kind %q: give smtp, imap or pop3", args[0])
	}
	host, port, err := splitHostPort(args[1])
	if err != nil {
		return "", probe.Target{}, 0, 0, err
	}
	mode := checks.TLSStartTLS
	switch {
	case o.implicitTLS:
		mode = checks.TLSImplicit
	case o.plain:
		mode = checks.TLSNone
	case o.startTLS:
	case port == 465 || port == 993 || port == 995:
		mode = checks.TLSImplicit
	}
	if port == 0 {
		port = checks.DefaultPort(kind, mode)
	}
	t := probe.Target{Host: host, Port: port, TLS: mode, Username: o.login, Mailbox: o.mailbox, HelloName: o.helo}
	if mode != checks.TLSNone {
		t.CertWarningDays = o.certWarningDays
	}
	if o.login != "" {
		if t.Password, err = o.password(lookupEnv, stdin); err != nil {
			return "", t, 0, 0, err
		}
	}
	if o.expectGreeting != "" {
		if t.ExpectGreeting, err = regexp.Compile(o.expectGreeting); err != nil {
			return "", t, 0, 0, fmt.Errorf("--expect-greeting: %w", err)
		}
	}
	if t.RootCAs, err = o.roots(); err != nil {
		return "", t, 0, 0, err
	}
	if o.timeout <= 0 {
		return "", t, 0, 0, fmt.Errorf("--timeout must be positive, got %v", o.timeout)
	}
	if err := t.Validate(); err != nil {
		return "", t, 0, 0, err
	}
	return kind, t, o.timeout, o.slow, nil
}

// fromFile is the target of a service check of --checks, as the sender
// builds it (checktarget.FromCheck).
func (o checkOptions) fromFile(args []string, lookupEnv func(string) (string, bool)) (string, probe.Target, time.Duration, time.Duration, error) {
	if len(args) != 1 {
		return "", probe.Target{}, 0, 0, errors.New("with --checks, give one CHECK_ID")
	}
	f, err := checks.Load(o.checksFile)
	if err != nil {
		return "", probe.Target{}, 0, 0, err
	}
	c := f.Lookup(args[0])
	switch {
	case c == nil:
		return "", probe.Target{}, 0, 0, fmt.Errorf("%s: no check %q", o.checksFile, args[0])
	case probers.For(c.Kind) == nil:
		return "", probe.Target{}, 0, 0, fmt.Errorf("%s: check %q is a %s check; scout check runs smtp, imap and pop3 checks", o.checksFile, c.ID, c.Kind)
	}
	t, err := checktarget.FromCheck(c, lookupEnv)
	if err != nil {
		return "", t, 0, 0, err
	}
	if t.RootCAs, err = o.roots(); err != nil {
		return "", t, 0, 0, err
	}
	t.HelloName = o.helo
	return c.Kind, t, c.Timeout, c.Slow, nil
}

// password reads the --login password.
func (o checkOptions) password(lookupEnv func(string) (string, bool), stdin io.Reader) (string, error) {
	if o.passwordStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", fmt.Errorf("--password-stdin: no password on standard input (%v)", err)
		}
		return line, nil
	}
	pw, ok := lookupEnv(o.passwordEnv)
	if !ok || pw == "" {
		return "", fmt.Errorf("--login %s: the password variable %s is not set or empty (set it, or give --password-stdin)", o.login, o.passwordEnv)
	}
	return pw, nil
}

// roots is the system's roots plus --ca's certificates, or nil (the
// system's) without --ca.
func (o checkOptions) roots() (*x509.CertPool, error) {
	if o.caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(o.caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", o.caFile)
	}
	return pool, nil
}

// splitHostPort splits HOST[:PORT] (an IPv6 address with a port in
// brackets); port 0 means none was given.
func splitHostPort(s string) (string, int, error) {
	host, portText := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, portText = h, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q: no host", s)
	}
	if portText == "" {
		return host, 0, nil
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port %q is not a number between 1 and 65535", s, portText)
	}
	return host, port, nil
}

// checkReport is `scout check --json`.
type checkReport struct {
	Kind    string `json:"kind,omitempty"`
	Target  string `json:"target,omitempty"` // host:port
	TLSMode string `json:"tls_mode,omitempty"`
	// Status is the attempt's: ok, slow, degraded, failed, timeout,
	// monitor_error; "unknown" when the check could not start (bad
	// arguments, no password), with the reason in Error.
	Status       string            `json:"status"`
	ExitCode     int               `json:"exit_code"`
	ErrorClass   string            `json:"error_class,omitempty"`
	Phase        string            `json:"phase,omitempty"`
	Error        string            `json:"error,omitempty"`
	Reply        *events.SMTPReply `json:"smtp_reply,omitempty"`
	Timings      *events.Timings   `json:"timings,omitempty"`
	TLS          *events.TLSInfo   `json:"tls,omitempty"`
	Capabilities []string          `json:"capabilities,omitempty"`
	Mailbox      *probe.Mailbox    `json:"mailbox,omitempty"`
	Transcript   []string          `json:"transcript,omitempty"` // with -v
}

func checkReportOf(r probe.Result, t probe.Target, status string, code int, verbose bool) checkReport {
	rep := checkReport{
		Kind: r.Protocol, Target: r.Addr, TLSMode: t.TLS, Status: status, ExitCode: code,
		ErrorClass: r.Class, Phase: r.Phase, Reply: r.Reply, Timings: &r.Timings, TLS: r.TLS,
		Capabilities: r.Capabilities, Mailbox: r.Mailbox,
	}
	if r.Err != nil {
		rep.Error = r.Err.Error()
	}
	if verbose {
		rep.Transcript = r.Transcript
	}
	return rep
}

// printCheck writes the result for a person: the plugin's status line
// with performance data, then the details.
func printCheck(w io.Writer, r probe.Result, t probe.Target, status string, code int, slow, timeout time.Duration, verbose bool) {
	tm := r.Timings
	head := fmt.Sprintf("%s %s - %s %s in %s", strings.ToUpper(r.Protocol), nagiosWords[code], r.Addr, status, fmtMS(tm.TotalMS))
	if r.Class != "" {
		head += ": " + oneLine(r.Err)
	}
	fmt.Fprintf(w, "%s | %s\n", head, perfData(tm, slow, timeout))

	mode := map[string]string{checks.TLSNone: "no TLS", checks.TLSStartTLS: "STARTTLS", checks.TLSImplicit: "implicit TLS"}[t.TLS]
	peer := ""
	if tm.PeerAddress != "" && tm.PeerAddress != r.Addr {
		peer = " (" + tm.PeerAddress + ")"
	}
	fmt.Fprintf(w, "  target        %s%s, %s\n", r.Addr, peer, mode)
	var phases []string
	for _, p := range []struct {
		name string
		ms   float64
	}{{"dns", tm.DNSMS}, {"connect", tm.ConnectMS}, {"greeting", tm.GreetingMS}, {"tls", tm.TLSMS},
		{"capabilities", tm.CapsMS}, {"auth", tm.AuthMS}, {"mailbox", tm.MailboxMS}} {
		if p.ms > 0 {
			phases = append(phases, p.name+" "+fmtMS(p.ms))
		}
	}
	phases = append(phases, "total "+fmtMS(tm.TotalMS))
	fmt.Fprintf(w, "  phases        %s\n", strings.Join(phases, ", "))
	if c := r.TLS; c != nil {
		fmt.Fprintf(w, "  tls           %s %s\n", c.Version, c.CipherSuite)
		verdict := "verified"
		switch {
		case !c.Verified:
			verdict = "NOT VERIFIED: " + c.VerifyError
		case !c.HostnameMatch:
			verdict = "does NOT name " + t.Host
		}
		fmt.Fprintf(w, "  certificate   %s, expires %s (%d days), %s\n", c.PeerSubject, c.PeerNotAfter.UTC().Format("2006-01-02"), c.DaysLeft, verdict)
	}
	if len(r.Capabilities) > 0 {
		fmt.Fprintf(w, "  capabilities  %s\n", strings.Join(r.Capabilities, ", "))
	}
	if m := r.Mailbox; m != nil {
		fmt.Fprintf(w, "  mailbox       %s: %d messages\n", m.Name, m.Messages)
	}
	if r.Class != "" {
		fmt.Fprintf(w, "  failed        phase %s, class %s\n", firstNonEmpty(r.Phase, "-"), r.Class)
		fmt.Fprintf(w, "  error         %s\n", oneLine(r.Err))
		if r.Reply != nil {
			fmt.Fprintf(w, "  reply         %s\n", r.Reply)
		}
	}
	if verbose {
		fmt.Fprintln(w, "  dialogue")
		if len(r.Transcript) == 0 {
			fmt.Fprintln(w, "    (nothing was said: no connection)")
		}
		for _, l := range r.Transcript {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
}

// perfData is the plugin's performance data (Monitoring Plugins
// Development Guidelines, "Performance data"): each phase in seconds, the
// whole time with the slow threshold as warning and the deadline as
// critical.
func perfData(tm events.Timings, slow, timeout time.Duration) string {
	sec := func(ms float64) string { return strconv.FormatFloat(ms/1000, 'f', 6, 64) + "s" }
	parts := []string{fmt.Sprintf("time=%s;%s;%s;0", sec(tm.TotalMS), strconv.FormatFloat(slow.Seconds(), 'f', 3, 64), strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64))}
	for _, p := range []struct {
		name string
		ms   float64
	}{{"dns", tm.DNSMS}, {"connect", tm.ConnectMS}, {"greeting", tm.GreetingMS}, {"tls", tm.TLSMS},
		{"capabilities", tm.CapsMS}, {"auth", tm.AuthMS}, {"mailbox", tm.MailboxMS}} {
		if p.ms > 0 {
			parts = append(parts, p.name+"="+sec(p.ms))
		}
	}
	return strings.Join(parts, " ")
}

func fmtMS(ms float64) string {
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
