//go:build e2e

package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/stack"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/prometheus/client_golang/prometheus"
)

// TestLoopOAuthRelayAndReceiver: the whole loop with every login on OAuth
// 2.0, as on Microsoft 365: the sender submits to Postfix with AUTH
// XOAUTH2 (SCOUT_RELAY_OAUTH_*, Postfix asking Dovecot's oauth2 passdb),
// scout-reflector reflects from ~/.forward to imapscout's mailbox, and the
// receiver in IMAP mode logs in to Dovecot with AUTHENTICATE XOAUTH2
// (SCOUT_RECEIVER_IMAP_OAUTH_*) and takes the returns. Every token comes
// from the client credentials endpoint on loopback; the results are ok
// with a round trip.
func TestLoopOAuthRelayAndReceiver(t *testing.T) {
	e := setup(t)
	expungeIMAP(t, oauthUser)
	p := startIDP(t, time.Hour)
	l := startLoopWith(t, e, imapBox, loopChecks, func(cfg *stack.Config, _ *stack.Deps) {
		cfg.Sender.RelayUsername = oauthUser
		cfg.Sender.RelayOAuth = oauthConfig(p, mailauth.XOAuth2)
	})
	host, port, _ := net.SplitHostPort(imapAddr)
	rcfg := receiverConfig(imapBox)
	rcfg.ProbeKeys = receiver.Secret(l.keySpec)
	rcfg.Mode, rcfg.IMAPServer, rcfg.IMAPTLS, rcfg.IMAPUser = receiver.ModeIMAP, host, receiver.IMAPTLSStartTLS, oauthUser
	rcfg.IMAPPort, _ = strconv.Atoi(port)
	rcfg.IMAPOAuth = oauthConfig(p, mailauth.XOAuth2)
	rcfg.IMAPMailbox, rcfg.IMAPPollInterval, rcfg.IMAPIdleRefresh, rcfg.IMAPCleanupMargin = "INBOX", 10*time.Second, 9*time.Minute, time.Hour
	rcfg.IMAPFastPoll = receiver.Defaults().IMAPFastPoll
	r, err := receiver.New(rcfg, receiver.Deps{Checks: l.checks, Publisher: l.pub, Keyring: l.keyring,
		IMAPTLS: &tls.Config{RootCAs: e.cas, MinVersion: tls.VersionTLS12}, Logger: l.log, Registerer: prometheus.NewRegistry(),
		Sent: platform.NATSSubscriber{NC: l.js.Conn()}})
	if err != nil {
		t.Fatal(err)
	}
	l.run("receiver", r.Run)

	var rtts []time.Duration
	for range 3 {
		res := l.result(l.schedule("acme-rt"), 1)
		rtts = append(rtts, checkOK(t, res))
		e.maillog(res.Evidence.Submission.QueueID, "sasl_method=XOAUTH2, sasl_username="+oauthUser)
	}
	logins, expired := p.logins()
	if len(logins) == 0 || expired != 0 {
		t.Errorf("Dovecot checked %d valid tokens and %d expired ones, want some valid and none expired", len(logins), expired)
	}
	if strings.Contains(l.logs.String(), appSecret) {
		t.Error("the client secret was logged")
	}
	fmt.Printf("e2e: loop with OAuth everywhere: sender -> Postfix (AUTH XOAUTH2) -> .forward -> scout-reflector -> Maildir -> Dovecot -> receiver (IMAP, AUTHENTICATE XOAUTH2) -> evaluator: %s\n", summary(rtts))
}
