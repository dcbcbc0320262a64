package receiver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/imapprobe"
)

// ErrLoginFailed is CheckLogin's error when the mailbox could not be
// reached, logged in to or examined; what went wrong was written out.
var ErrLoginFailed = errors.New("the return mailbox login failed")

// CheckLogin is `receiver check-login`: it logs in to the IMAP-mode
// return mailbox once, exactly as the receiver would (the same server,
// TLS mode, user, password or OAuth login from SCOUT_RECEIVER_IMAP_*),
// examines SCOUT_RECEIVER_IMAP_MAILBOX read-only and writes to w what it
// saw: each phase's time, the TLS session and certificate, the number of
// messages, and on failure the phase, the error and the dialogue
// (credentials masked). It changes nothing in the mailbox. roots verifies
// the server's certificate (nil: the system's), hc fetches OAuth tokens
// (nil: a 30 s client). It returns nil when every phase passed,
// ErrLoginFailed when one did not, or a configuration error.
func CheckLogin(ctx context.Context, cfg Config, roots *x509.CertPool, hc *http.Client, w io.Writer) error {
	if cfg.Mode != ModeIMAP {
		return fmt.Errorf("SCOUT_RECEIVER_MODE=%q: check-login checks the return mailbox of imap mode", cfg.Mode)
	}
	if errs := cfg.validateIMAP(); len(errs) > 0 {
		return errors.Join(errs...)
	}
	host, portText, _ := net.SplitHostPort(cfg.imapAddr())
	port, _ := strconv.Atoi(portText)
	t := probe.Target{Host: host, Port: port, TLS: cfg.IMAPTLS, Username: cfg.IMAPUser,
		Password: cfg.IMAPPassword.Reveal(), Mailbox: cfg.IMAPMailbox, RootCAs: roots}
	how := "password"
	login, err := cfg.imapLogin(nil, hc)
	if err != nil {
		return err
	}
	if login != nil {
		t.Auth = login
		how = "OAuth " + cfg.IMAPOAuth.Provider + " (" + strings.ToUpper(login.Mechanism) + ")"
	}
	fmt.Fprintf(w, "return mailbox %s on %s (%s TLS), user %s, %s\n", cfg.IMAPMailbox, t.Addr(), cfg.IMAPTLS, cfg.IMAPUser, how)
	r := imapprobe.Probe(ctx, t)
	tm := r.Timings
	fmt.Fprintf(w, "  phases       connect %.0f ms, greeting %.0f ms, tls %.0f ms, capabilities %.0f ms, auth %.0f ms, mailbox %.0f ms, total %.0f ms\n",
		tm.ConnectMS, tm.GreetingMS, tm.TLSMS, tm.CapsMS, tm.AuthMS, tm.MailboxMS, tm.TotalMS)
	if c := r.TLS; c != nil {
		fmt.Fprintf(w, "  tls          %s, certificate %s, %d days left, verified %v, names the host %v\n",
			c.Version, c.PeerSubject, c.DaysLeft, c.Verified, c.HostnameMatch)
	}
	if r.Class == "" && r.Mailbox != nil {
		fmt.Fprintf(w, "  ok           logged in; %s holds %d messages\n", r.Mailbox.Name, r.Mailbox.Messages)
		return nil
	}
	fmt.Fprintf(w, "  FAILED       at %s (%s): %v\n", r.Phase, r.Class, r.Err)
	if r.Class == probe.ClassCredentials {
		fmt.Fprintln(w, "  hint         the token endpoint refused our OAuth credential: check SCOUT_RECEIVER_IMAP_OAUTH_* (a rotated client secret, the app's consent)")
	}
	fmt.Fprintln(w, "  dialogue")
	for _, l := range r.Transcript {
		fmt.Fprintf(w, "    %s\n", l)
	}
	return ErrLoginFailed
}
