//go:build e2e

package e2e

import (
	"bufio"
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
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/emersion/go-smtp"
)

// The stack scripts/mailstack.sh builds (defaults of its environment).
var (
	repo         = mustRepo()
	stackDir     = envOr("SCOUT_STACK_DIR", "/etc/scout-mailstack")
	postfixLog   = filepath.Join(envOr("SCOUT_STACK_LOG_DIR", "/var/log/scout-mailstack"), "postfix.log")
	imapAddr     = "127.0.0.1:" + envOr("SCOUT_IMAP_PORT", "143")
	reflectorBin = "/usr/local/bin/scout-reflector"
	probeBox     = "webscout@acme.example"
	imapBox      = "imapscout@acme.example"
	returnAddr   = "return@monitor.example"
	bounceAddr   = "bounces@monitor.example" // the probes' envelope sender: bounces come back to the return server too
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func mustRepo() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func mailstack(args ...string) error {
	cmd := exec.Command("bash", append([]string{filepath.Join(repo, "scripts", "mailstack.sh")}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func TestMain(m *testing.M) {
	t0 := time.Now()
	if err := mailstack("start"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: scripts/mailstack.sh start:", err)
		os.Exit(1)
	}
	fmt.Printf("e2e: mail stack ready in %v\n", time.Since(t0).Round(time.Millisecond))
	code := m.Run()
	if os.Getenv("SCOUT_E2E_KEEP") == "" {
		_ = mailstack("stop")
	}
	os.Exit(code)
}

// returnServer is the monitor's side: an SMTP server on 127.0.0.1 for the
// return domain, which Postfix's transport map routes to.
type returnServer struct {
	Addr string
	srv  *smtp.Server
	mu   sync.Mutex
	msgs []received
	got  chan struct{}
}

type received struct {
	From string
	To   []string
	Data []byte
	At   time.Time
}

func listenReturn(t *testing.T, addr string) *returnServer {
	t.Helper()
	s := &returnServer{got: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	s.srv.Domain = "return.monitor.example"
	s.srv.ReadTimeout, s.srv.WriteTimeout = 30*time.Second, 30*time.Second
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *returnServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// wait returns once n messages arrived, or fails the test at ctx's end.
func (s *returnServer) wait(ctx context.Context, t *testing.T, n int) []received {
	t.Helper()
	for {
		if m := s.messages(); len(m) >= n {
			return m
		}
		select {
		case <-s.got:
		case <-ctx.Done():
			t.Fatalf("return server got %d messages, want %d", len(s.messages()), n)
		}
	}
}

type session struct {
	s    *returnServer
	from string
	to   []string
}

func (x *session) AuthMechanisms() []string { return nil }
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}
func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, received{From: x.from, To: x.to, Data: b, At: time.Now()})
	x.s.mu.Unlock()
	select {
	case x.s.got <- struct{}{}:
	default:
	}
	return nil
}
func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

// env is one test's view of the stack.
type env struct {
	t    *testing.T
	ctx  context.Context
	key  probemail.Key
	keys *probemail.Keyring
	ret  *returnServer
	cas  *x509.CertPool
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	b, err := os.ReadFile(filepath.Join(stackDir, "probe-keys"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := probemail.ParseKeys(string(b))
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.SigningKey("acme")
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(stackDir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(pem)
	// Start from an empty queue, so that nothing of an earlier test arrives.
	run(t, "postsuper", "-d", "ALL")
	e := &env{t: t, ctx: ctx, key: key, keys: keys, cas: cas}
	e.ret = listenReturn(t, "127.0.0.1:0")
	e.route(e.ret.Addr)
	return e
}

func (e *env) route(addr string) {
	e.t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	if err := mailstack("route", port); err != nil {
		e.t.Fatal(err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// probe builds a probe for to, signed with key (the stack's, or another).
func (e *env) probe(to string, key probemail.Key) (probemail.Probe, []byte) {
	e.t.Helper()
	id, err := events.NewTestID(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	p := probemail.Probe{KeyID: key.ID, TestID: id, CheckID: "acme-rt", Site: "e2e", Attempt: 1,
		StartedAt: time.Now().Truncate(time.Millisecond), ReturnTo: returnAddr}
	msg, err := probemail.Build(p, to, key, probemail.BuildOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p, msg
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// submit hands msg to Postfix on 127.0.0.1:25 (STARTTLS, the stack's
// certificate) and returns the queue id.
func (e *env) submit(to string, msg []byte) string {
	e.t.Helper()
	res, err := submit.Send(e.ctx, submit.Config{Addr: "127.0.0.1:25", TLS: submit.TLSStartTLS, TLSConfig: tlsFor(e.cas)},
		bounceAddr, []string{to}, msg)
	if err != nil {
		e.t.Fatalf("submit to Postfix: %v", err)
	}
	m := queuedAs.FindStringSubmatch(res.Reply.Text)
	if m == nil {
		e.t.Fatalf("no queue id in %q", res.Reply.Text)
	}
	return m[1]
}

// maillog waits for a Postfix log line about queue id qid matching re.
func (e *env) maillog(qid string, re string) string {
	e.t.Helper()
	pat := regexp.MustCompile(regexp.QuoteMeta(qid) + `: .*` + re)
	for {
		if b, err := os.ReadFile(postfixLog); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if pat.MatchString(sc.Text()) {
					return sc.Text()
				}
			}
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("no maillog line %q for %s in %s", re, qid, postfixLog)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// queue returns the queue ids Postfix holds (postqueue -j), maildrop included.
func queue(t *testing.T) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(run(t, "postqueue", "-j")))
	for sc.Scan() {
		var q struct {
			ID string `json:"queue_id"`
		}
		if json.Unmarshal(sc.Bytes(), &q) == nil {
			ids = append(ids, q.ID)
		}
	}
	return ids
}

// quiet waits until Postfix's queue is empty: whatever was going to be
// delivered, was.
func (e *env) quiet() {
	e.t.Helper()
	for len(queue(e.t)) > 0 {
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("queue not empty: %v", queue(e.t))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkReflection verifies that m is the reflection of p: the signature
// still verifies for the probe mailbox, stamped and marked auto-replied.
func (e *env) checkReflection(m received, p probemail.Probe, mailbox string) {
	e.t.Helper()
	r, err := probemail.ParseReturned(m.Data)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.TestID != p.TestID || !r.Reflected() || r.AutoSubmitted != "auto-replied" || r.ProbeTo != mailbox {
		e.t.Fatalf("not the reflection of %s: %+v", p.TestID, r)
	}
	if _, _, err := probemail.Verify(r.HeaderValue, r.ProbeTo, e.keys); err != nil {
		e.t.Fatalf("returned probe header does not verify: %v", err)
	}
	if len(m.To) != 1 || m.To[0] != returnAddr {
		e.t.Fatalf("reflection sent to %v", m.To)
	}
}

func TestPostfixForwardRoundTrip(t *testing.T) {
	e := setup(t)
	const n = 5
	var rtts []time.Duration
	for i := 0; i < n; i++ {
		p, msg := e.probe(probeBox, e.key)
		qid := e.submit(probeBox, msg)
		got := e.ret.wait(e.ctx, t, i+1)[i]
		e.checkReflection(got, p, probeBox)
		if got.From != probeBox {
			t.Errorf("reflection envelope sender %q, want the mailbox user %s", got.From, probeBox)
		}
		line := e.maillog(qid, `status=sent \(delivered to command: `+regexp.QuoteMeta(reflectorBin))
		if i == 0 {
			t.Logf("maillog: %s", line)
		}
		rtts = append(rtts, got.At.Sub(p.StartedAt))
	}
	slices.Sort(rtts)
	fmt.Printf("e2e: round trip Postfix -> local(8) -> .forward -> scout-reflector -> sendmail -> Postfix -> return server: rtt min %v, median %v, max %v (n=%d)\n",
		rtts[0].Round(time.Millisecond), rtts[n/2].Round(time.Millisecond), rtts[n-1].Round(time.Millisecond), n)
}

func TestForgedProbeGetsNothingBack(t *testing.T) {
	e := setup(t)
	forger := probemail.Key{ID: e.key.ID, Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{0x42}, 32))}
	_, forged := e.probe(probeBox, forger)
	qid := e.submit(probeBox, forged)
	e.maillog(qid, `status=sent \(delivered to command: `)
	// A genuine probe after it, so that we know the reflector path works
	// while the forged one got nothing.
	p, msg := e.probe(probeBox, e.key)
	e.submit(probeBox, msg)
	e.ret.wait(e.ctx, t, 1)
	e.quiet()
	got := e.ret.messages()
	if len(got) != 1 {
		t.Fatalf("return server got %d messages, want only the genuine reflection", len(got))
	}
	e.checkReflection(got[0], p, probeBox)
}

func TestMissingReflectorDefers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func() error
		cause   string
	}{
		{"binary missing", func() error { return os.Rename(reflectorBin, reflectorBin+".away") }, "No such file or directory"},
		{"binary not executable", func() error { return os.Chmod(reflectorBin, 0o644) }, "Permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			saved, err := os.ReadFile(reflectorBin)
			if err != nil {
				t.Fatal(err)
			}
			// restore puts the binary back by renaming a fresh copy over it:
			// writing into it would fail with "text file busy" while a
			// reflector Postfix started is still running.
			restore := func() {
				_ = os.Remove(reflectorBin + ".away")
				tmp := reflectorBin + ".restore"
				if err := os.WriteFile(tmp, saved, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(tmp, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, reflectorBin); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(restore)
			if err := tc.breakIt(); err != nil {
				t.Fatal(err)
			}
			p, msg := e.probe(probeBox, e.key)
			qid := e.submit(probeBox, msg)
			line := e.maillog(qid, `status=deferred`)
			t.Logf("maillog: %s", line)
			if !strings.Contains(line, tc.cause) {
				t.Errorf("defer reason lacks %q", tc.cause)
			}
			if !slices.Contains(queue(t), qid) {
				t.Fatalf("probe %s not in the queue after the deferral", qid)
			}
			if got := e.ret.messages(); len(got) != 0 {
				t.Fatalf("the monitor got %d messages (a bounce?) while the probe was deferred", len(got))
			}
			restore()
			run(t, "postqueue", "-i", qid)
			got := e.ret.wait(e.ctx, t, 1)
			e.checkReflection(got[0], p, probeBox)
			fmt.Printf("e2e: %s: deferred, then reflected after the fix: rtt %v (late, not lost)\n", tc.name, got[0].At.Sub(p.StartedAt).Round(time.Millisecond))
		})
	}
}

func TestReturnPortDownThenUp(t *testing.T) {
	e := setup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	_ = l.Close()
	e.route(down)
	p, msg := e.probe(probeBox, e.key)
	e.submit(probeBox, msg)
	// The reflection is queued by Postfix and deferred: connection refused.
	_, port, _ := net.SplitHostPort(down)
	refused := regexp.MustCompile(`to=<` + regexp.QuoteMeta(returnAddr) + `>.*status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:` + port + `: Connection refused\)`)
	for {
		b, _ := os.ReadFile(postfixLog)
		if line := refused.Find(b); line != nil {
			t.Logf("maillog: ...%s", line)
			break
		}
		select {
		case <-e.ctx.Done():
			t.Fatal("the reflection was not deferred by Postfix")
		case <-time.After(50 * time.Millisecond):
		}
	}
	up := listenReturn(t, down)
	run(t, "postqueue", "-f")
	got := up.wait(e.ctx, t, 1)
	e.checkReflection(got[0], p, probeBox)
	fmt.Printf("e2e: return port down, then up: the reflection arrived late, rtt %v\n", got[0].At.Sub(p.StartedAt).Round(time.Millisecond))
}

func TestWorldWritableForwardIsIgnored(t *testing.T) {
	e := setup(t)
	forward := "/home/webscout/.forward"
	if err := os.Chmod(forward, 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(forward, 0o644) })
	_, msg := e.probe(probeBox, e.key)
	qid := e.submit(probeBox, msg)
	line := e.maillog(qid, `status=sent \(delivered to maildir\)`)
	log, _ := os.ReadFile(postfixLog)
	if !bytes.Contains(log, []byte("warning: file "+forward+" is world writable")) {
		t.Errorf("no world-writable warning in the maillog")
	}
	t.Logf("maillog: %s", line)
	e.quiet()
	if got := e.ret.messages(); len(got) != 0 {
		t.Fatalf("reflected although the .forward was ignored: %d messages", len(got))
	}
}

func TestIMAPModeAgainstDovecot(t *testing.T) {
	e := setup(t)
	// A probe another test left unanswered would be reflected too, and
	// first: start from an empty mailbox.
	expungeIMAP(t, "imapscout")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys")
	b, _ := os.ReadFile(filepath.Join(stackDir, "probe-keys"))
	if err := os.WriteFile(keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, reflectorBin, "imap",
		"--key-file="+keyFile, "--state-dir="+filepath.Join(dir, "state"), "--mailbox="+imapBox,
		"--imap="+imapAddr, "--imap-tls=starttls", "--imap-user=imapscout",
		"--imap-password-file="+filepath.Join(stackDir, "imap-password"),
		"--smtp=127.0.0.1:25", "--tls-ca-file="+filepath.Join(stackDir, "cert.pem"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		err := cmd.Wait()
		t.Logf("scout-reflector imap (exit %v):\n%s", err, logs.String())
	}()

	marker := fmt.Sprintf("lunch-%d", time.Now().UnixNano())
	foreignQID := e.submit(imapBox, []byte("From: friend@example.org\r\nTo: imapscout@acme.example\r\nSubject: "+marker+"\r\n\r\nhi\r\n"))
	e.maillog(foreignQID, `status=sent \(delivered to maildir\)`)
	var rtts []time.Duration
	var ids []string
	for i := 0; i < 3; i++ {
		p, msg := e.probe(imapBox, e.key)
		ids = append(ids, p.TestID)
		e.submit(imapBox, msg)
		got := e.ret.wait(e.ctx, t, i+1)[i]
		e.checkReflection(got, p, imapBox)
		rtts = append(rtts, got.At.Sub(p.StartedAt))
	}
	// The probes are deleted, the foreign message is kept.
	maildir := "/home/imapscout/Maildir"
	for {
		foreign, probes := 0, 0
		for _, sub := range []string{"new", "cur"} {
			entries, _ := os.ReadDir(filepath.Join(maildir, sub))
			for _, de := range entries {
				b, _ := os.ReadFile(filepath.Join(maildir, sub, de.Name()))
				if bytes.Contains(b, []byte(marker)) {
					foreign++
				}
				for _, id := range ids {
					if bytes.Contains(b, []byte(id)) {
						probes++
					}
				}
			}
		}
		if foreign == 1 && probes == 0 {
			break
		}
		select {
		case <-e.ctx.Done():
			t.Fatalf("in %s: %d copies of the foreign message (want 1), %d probes (want 0)", maildir, foreign, probes)
		case <-time.After(50 * time.Millisecond):
		}
	}
	slices.Sort(rtts)
	fmt.Printf("e2e: round trip Postfix -> Maildir -> Dovecot IDLE -> scout-reflector imap -> SMTP AUTH -> Postfix -> return server: rtt min %v, median %v, max %v (n=3)\n",
		rtts[0].Round(time.Millisecond), rtts[1].Round(time.Millisecond), rtts[2].Round(time.Millisecond))
	if errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("stopped early")
	}
}

// expungeIMAP empties user's INBOX in Dovecot (doveadm expunge).
func expungeIMAP(t *testing.T, user string) {
	t.Helper()
	run(t, "doveadm", "-c", filepath.Join(stackDir, "dovecot.conf"), "expunge", "-u", user, "mailbox", "INBOX", "all")
}

func tlsFor(cas *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: cas, MinVersion: tls.VersionTLS12}
}

// A broken configuration exits 78: Postfix bounces the probe to its
// envelope sender (the monitor) with "local configuration error", as
// docs/reflector.md says.
func TestBrokenConfigurationBouncesToTheMonitor(t *testing.T) {
	e := setup(t)
	keyFile := "/home/webscout/.scout-reflector/keys"
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(keyFile, 0o600) })
	p, msg := e.probe(probeBox, e.key)
	qid := e.submit(probeBox, msg)
	line := e.maillog(qid, `status=bounced \(local configuration error\. Command output: .*chmod 600`)
	t.Logf("maillog: %s", line)
	got := e.ret.wait(e.ctx, t, 1)
	if got[0].From != "" || len(got[0].To) != 1 || got[0].To[0] != bounceAddr {
		t.Fatalf("bounce envelope %q -> %v, want <> -> %s", got[0].From, got[0].To, bounceAddr)
	}
	if !bytes.Contains(got[0].Data, []byte(p.TestID)) {
		t.Error("the bounce does not carry the probe")
	}
}

// scout-reflector check, run as the mailbox user with the documented key
// file, says what it would do (docs/reflector.md, section 6).
func TestCheckAsTheMailboxUser(t *testing.T) {
	e := setup(t)
	p, msg := e.probe(probeBox, e.key)
	cmd := exec.Command("runuser", "-u", "webscout", "--", reflectorBin, "check", "--key-file=/home/webscout/.scout-reflector/keys")
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{"verdict:", "reflect", "test " + p.TestID, "X-Scout-Reflected-At:"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if len(e.ret.messages()) != 0 {
		t.Error("check sent something")
	}
}
