package receiver

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/dsn"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
)

// Bounce outcomes (label "outcome" of scout_receiver_bounces_total).
const (
	BounceFailed    = "failed"       // a failed DSN of a probe: mail.bounced stored
	BounceDelayed   = "delayed"      // a delay warning of a probe: mail.bounced stored
	BounceUnmatched = "unmatched"    // a bounce that names no probe we can verify: dropped
	BounceNotBounce = "not_a_bounce" // an auto-reply or other null-sender mail: dropped
	BounceOther     = "other"        // a success notice (delivered, relayed): dropped
)

// Rejection reasons of bounce addresses (scout_receiver_rejected_total).
const (
	// ReasonVERPSender: a non-null sender wrote to a VERP address, which
	// takes bounces only.
	ReasonVERPSender = "verp_sender"
	// ReasonVERPForged: a VERP address whose token does not verify.
	ReasonVERPForged = "verp_forged"
)

// bounceTarget is the test a VERP address names, once its token verified.
type bounceTarget struct {
	testID, site, check string
}

// verpCandidate is one (site, check) of the check file, indexed by its
// probemail.VERPHash.
type verpCandidate struct {
	site, check, customer string
}

// verpIndex finds the (site, check) pairs a VERP hash may stand for. It is
// rebuilt when the check file in force changes (a reload).
type verpIndex struct {
	mu     sync.Mutex
	file   *checks.File
	byHash map[string][]verpCandidate
}

func (x *verpIndex) candidates(f *checks.File, hash string) []verpCandidate {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.file != f {
		x.file, x.byHash = f, map[string][]verpCandidate{}
		for _, c := range f.Checks {
			for _, site := range c.Sites {
				h := probemail.VERPHash(site, c.ID)
				x.byHash[h] = append(x.byHash[h], verpCandidate{site: site, check: c.ID, customer: c.Customer})
			}
		}
	}
	return x.byHash[hash]
}

// errVERPForged is verpTarget's error for a VERP address on one of our
// return addresses whose token verifies for no check.
var errVERPForged = errors.New("the bounce address does not verify")

// verpTarget reads addr as a VERP envelope sender of one of our probes
// (probemail.ParseVERP on one of this receiver's return addresses): the
// test it names when its token verifies (against every key of each
// candidate check's customer, so that key rotation goes on working),
// errVERPForged when it does not, and nil, nil when addr is no VERP address
// of ours.
func (r *Receiver) verpTarget(addr string) (*bounceTarget, error) {
	tok, ok := probemail.ParseVERP(addr)
	if !ok || !r.returns[strings.ToLower(tok.Return)] {
		return nil, nil
	}
	for _, c := range r.verp.candidates(r.deps.Checks.Current(), tok.Hash) {
		for _, key := range r.deps.Keyring.KeysOf(c.customer) {
			if tok.Verify(c.site, c.check, key) {
				return &bounceTarget{testID: tok.TestID, site: c.site, check: c.check}, nil
			}
		}
	}
	return nil, errVERPForged
}

// isPostmaster reports whether addr is postmaster at one of the return
// addresses' domains, or the bare "postmaster" (RFC 5321 section 4.5.1:
// every SMTP server must take mail for it).
func (r *Receiver) isPostmaster(addr string) bool {
	addr = strings.ToLower(strings.TrimSpace(addr))
	if addr == "postmaster" {
		return true
	}
	local, domain, ok := strings.Cut(addr, "@")
	return ok && local == "postmaster" && r.domains[domain]
}

// TakeBounce stores what a bounce sent to a verified VERP address says
// about the test it names: a failed or delayed DSN (RFC 3464; pkg/dsn also
// reads Exchange, qmail and Exim notices) becomes mail.bounced, stored
// before the SMTP answer. Anything else from the null sender to a VERP
// address (an auto-reply, a success notice) is dropped and counted: a
// bounce is never refused (a refused bounce makes a double bounce). It
// returns OutcomeBounce, or a *StoreError (answer 451: try again later).
func (r *Receiver) TakeBounce(ctx context.Context, msg []byte, t bounceTarget, env Envelope) (string, error) {
	log := r.log.With("via", env.Via, "remote", env.Remote, "test_id", t.testID, "check", t.check, "probe_site", t.site)
	rep, err := dsn.Parse(msg)
	if err != nil {
		r.metrics.bounces.WithLabelValues(BounceNotBounce).Inc()
		log.Info("null-sender mail to a bounce address is no bounce: dropped", "error", err)
		return OutcomeBounce, nil
	}
	return r.storeBounce(ctx, log, rep, t, events.MatchedVERP, env)
}

// storeBounce publishes the bounce of test t (found by matchedBy) and
// counts it; a report that is neither a failure nor a delay is dropped.
func (r *Receiver) storeBounce(ctx context.Context, log *slog.Logger, rep *dsn.Report, t bounceTarget, matchedBy string, env Envelope) (string, error) {
	action := ""
	switch {
	case rep.Permanent():
		action = events.BounceFailed
	case rep.Delayed():
		action = events.BounceDelayed
	default:
		r.metrics.bounces.WithLabelValues(BounceOther).Inc()
		log.Info("delivery notice that is neither a failure nor a delay: dropped", "parser", rep.Parser)
		return OutcomeBounce, nil
	}
	b := events.Bounce{Action: action, ReportingMTA: rep.ReportingMTA, Parser: rep.Parser, Summary: rep.Summary()}
	if len(rep.Recipients) > 0 {
		rc := rep.Recipients[0]
		b.Status, b.Diagnostic, b.RemoteMTA, b.FinalRecipient = rc.Status, rc.Diagnostic, rc.RemoteMTA, rc.FinalRecipient
	}
	ev := events.MailBounced{V: events.SchemaVersion, TestID: t.testID, CheckID: t.check, Site: t.site, Action: action,
		Bounce: b, ReceivedAt: env.ReceivedAt.UTC(), MatchedBy: matchedBy, Via: env.Via}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	if _, err := r.deps.Publisher.Publish(pctx, ev); err != nil {
		r.metrics.storeFailures.Inc()
		log.Error("bounce not stored; asking the sender to retry", "error", err)
		return "", &StoreError{TestID: t.testID, Err: err}
	}
	r.metrics.bounces.WithLabelValues(action).Inc()
	log.Warn("bounce of a probe stored", "action", action, "status", b.Status, "remote_mta", b.RemoteMTA, "summary", b.Summary)
	return OutcomeBounce, nil
}

// quotedProbeBounce reads a bounce sent to a plain return address (no VERP
// token: VERP off, or a system that bounces to the header From) as the
// bounce of the probe it quotes: the returned original's signed probe
// header must verify (for its final recipient, or its check's target) with
// a key of the check's customer. nil when it quotes no probe that verifies.
func (r *Receiver) quotedProbeBounce(msg []byte) (*dsn.Report, *bounceTarget) {
	rep, err := dsn.Parse(msg)
	if err != nil || rep.Original == nil || rep.Original.Probe == "" {
		return rep, nil
	}
	claimed, _, err := probemail.ParseHeader(rep.Original.Probe)
	if err != nil {
		return rep, nil
	}
	c := r.deps.Checks.Current().Lookup(claimed.CheckID)
	if c == nil {
		return rep, nil
	}
	tos := []string{c.Target}
	for _, rc := range rep.Recipients {
		tos = append(tos, rc.FinalRecipient, rc.OriginalRecipient)
	}
	for _, to := range tos {
		if to == "" {
			continue
		}
		if p, key, err := probemail.Verify(rep.Original.Probe, to, r.deps.Keyring); err == nil && key.Customer == c.Customer {
			return rep, &bounceTarget{testID: p.TestID, site: p.Site, check: p.CheckID}
		}
	}
	return rep, nil
}

// takePostmaster keeps mail to postmaster where an operator reads it: one
// log line with its sender, subject and size, and a count. It is always
// accepted (RFC 5321 section 4.5.1).
func (r *Receiver) takePostmaster(msg []byte, env Envelope) {
	subject := ""
	if ret, err := probemail.ParseReturned(msg); err == nil {
		subject = ret.Subject
	}
	r.metrics.postmaster.Inc()
	r.log.Warn("mail to postmaster", "via", env.Via, "remote", env.Remote, "mail_from", env.From, "subject", subject,
		"bytes", len(msg), "received_at", env.ReceivedAt.UTC().Format(time.RFC3339))
}
