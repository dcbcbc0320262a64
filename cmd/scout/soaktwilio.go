package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// fakeTwilio is the soak's Twilio: the notifier process runs the real
// twilio-go client against https://api.twilio.com, with HTTPS_PROXY
// pointing here and SSL_CERT_FILE trusting an authority made at start. The
// fake answers CONNECT api.twilio.com:443, ends TLS with a certificate for
// api.twilio.com, checks what the Messages API checks (Basic auth, path,
// To, From, Body) and counts every message it creates. Any other host is
// refused, so nothing can reach the real API.
type fakeTwilio struct {
	sid, token string
	ln         net.Listener
	tlsCfg     *tls.Config
	caPEM      []byte
	api        *http.Server
	conns      chan net.Conn

	mu       sync.Mutex
	messages []fakeSMS
	problems []string
}

// fakeSMS is one message the fake created.
type fakeSMS struct {
	To, Body string
	At       time.Time
}

func newFakeTwilio(sid, token string) (*fakeTwilio, error) {
	cert, _, err := demoCertificate("api.twilio.com", time.Now())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &fakeTwilio{sid: sid, token: token, ln: ln, conns: make(chan net.Conn),
		tlsCfg: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[1]})}
	t.api = &http.Server{Handler: http.HandlerFunc(t.serveAPI), ReadHeaderTimeout: 10 * time.Second}
	return t, nil
}

// proxyURL is the HTTPS_PROXY of the notifier.
func (t *fakeTwilio) proxyURL() string { return "http://" + t.ln.Addr().String() }

func (t *fakeTwilio) writeCA(path string) error { return os.WriteFile(path, t.caPEM, 0o644) }

func (t *fakeTwilio) run(ctx context.Context) {
	go func() { _ = t.api.Serve(chanListener{t}) }()
	go func() {
		<-ctx.Done()
		_ = t.ln.Close()
		_ = t.api.Close()
	}()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		go t.connect(ctx, c)
	}
}

// connect handles one proxy connection: CONNECT api.twilio.com:443, then
// TLS, then the API.
func (t *fakeTwilio) connect(ctx context.Context, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	if req.Method != http.MethodConnect || req.Host != "api.twilio.com:443" {
		t.problem("proxy request " + req.Method + " " + req.Host + " refused")
		_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		c.Close()
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	tc := tls.Server(bufferedConn{Conn: c, r: br}, t.tlsCfg)
	select {
	case t.conns <- tc:
	case <-ctx.Done():
		c.Close()
	}
}

func (t *fakeTwilio) problem(p string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.problems = append(t.problems, p)
}

func (t *fakeTwilio) serveAPI(w http.ResponseWriter, r *http.Request) {
	fail := func(status, code int, msg string) {
		t.problem(msg)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "status": status})
	}
	user, pass, ok := r.BasicAuth()
	switch {
	case r.Method != http.MethodPost:
		fail(http.StatusMethodNotAllowed, 20004, "method "+r.Method)
		return
	case !ok || user != t.sid || pass != t.token:
		fail(http.StatusUnauthorized, 20003, "Authenticate")
		return
	case r.URL.Path != "/2010-04-01/Accounts/"+t.sid+"/Messages.json":
		fail(http.StatusNotFound, 20404, "path "+r.URL.Path)
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, 0, "form: "+err.Error())
		return
	}
	to, body := r.PostForm.Get("To"), r.PostForm.Get("Body")
	if to == "" || body == "" || (r.PostForm.Get("From") == "" && r.PostForm.Get("MessagingServiceSid") == "") {
		fail(http.StatusBadRequest, 21602, "To, Body and From are required")
		return
	}
	t.mu.Lock()
	t.messages = append(t.messages, fakeSMS{To: to, Body: body, At: time.Now()})
	sid := fmt.Sprintf("SM%032x", len(t.messages))
	t.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"sid": sid, "account_sid": t.sid, "to": to, "body": body, "status": "queued"})
}

func (t *fakeTwilio) report() ([]fakeSMS, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]fakeSMS(nil), t.messages...), append([]string(nil), t.problems...)
}

// chanListener hands the API server the TLS connections of CONNECT
// tunnels.
type chanListener struct{ t *fakeTwilio }

func (l chanListener) Accept() (net.Conn, error) {
	c, ok := <-l.t.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l chanListener) Close() error   { return nil }
func (l chanListener) Addr() net.Addr { return l.t.ln.Addr() }

// bufferedConn reads what the proxy request's reader already buffered
// first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// smsTransition says which transition an SMS text announces (the
// notifier's texts: "RESOLVED ..." and "CLOSED ..." end an incident).
func smsTransition(body string) string {
	if strings.HasPrefix(body, "RESOLVED ") || strings.HasPrefix(body, "CLOSED ") {
		return "resolved"
	}
	return "open"
}
