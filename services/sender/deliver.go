package sender

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/submit"
)

// maxMXAddresses bounds the addresses tried for one probe in mx delivery
// (RFC 5321 section 5.1 asks clients to limit the attempts).
const maxMXAddresses = 10

// delivery is the outcome of one submission attempt.
type delivery struct {
	res       submit.Result
	hop       string // host:port of the relay or MX used (the last one tried)
	err       error  // nil: the first hop answered 250 to the DATA
	status    string // events.SentFailed or SentMonitorError when err != nil
	class     string // Class* when err != nil
	temporary bool   // trying again later may succeed
}

// deliver submits msg from the envelope sender from to to, by the
// configured delivery.
func (s *Sender) deliver(ctx context.Context, msg []byte, from, to string) delivery {
	if s.cfg.Delivery == DeliveryMX {
		return s.deliverMX(ctx, msg, from, to)
	}
	return s.deliverRelay(ctx, msg, from, to)
}

// deliverRelay submits to our relay. Every failure is the monitor's.
func (s *Sender) deliverRelay(ctx context.Context, msg []byte, from, to string) delivery {
	res, err := s.relay.Send(ctx, from, []string{to}, msg)
	d := delivery{res: res, hop: s.cfg.RelayAddr}
	if err == nil {
		return d
	}
	d.err, d.status = err, events.SentMonitorError
	d.class, d.temporary = classifyRelay(err)
	return d
}

// classifyRelay names a relay failure (docs/field-cases.md, c02).
func classifyRelay(err error) (class string, temporary bool) {
	var se *submit.Error
	if !errors.As(err, &se) {
		return ClassRelayUnreachable, true
	}
	switch {
	case se.Phase == submit.PhaseAuth || se.Reply != nil && isAuthReply(se.Reply):
		return ClassRelayAuth, fault.MarkedTemporary(err)
	case se.Phase == submit.PhaseTLS:
		return ClassRelayTLS, fault.MarkedTemporary(err)
	case se.Refused():
		return ClassRelayRefused, fault.MarkedTemporary(err)
	default:
		return ClassRelayUnreachable, fault.MarkedTemporary(err)
	}
}

// isAuthReply recognises replies about authentication (RFC 4954 section 6:
// 530 authentication required, 534, 535 credentials invalid, 538, 454).
func isAuthReply(r *events.SMTPReply) bool {
	switch r.Code {
	case 530, 534, 535, 538, 454:
		return true
	}
	return r.Enhanced == "5.7.8" || r.Enhanced == "5.7.0" && r.Code == 530
}

// mxTarget is one address to try.
type mxTarget struct {
	host string // the MX host name (TLS server name, hop)
	addr string // ip:port to dial
}

// deliverMX delivers straight to the MX hosts of to's domain (RFC 5321
// section 5.1): MX records in preference order (equal preferences in
// random order), the domain itself when it has no MX record (implicit
// MX), nothing for a null MX (RFC 7505). A host that cannot be reached is
// skipped for the next one; a host that answers decides. STARTTLS is used
// when offered, without certificate verification, as MTAs do without
// MTA-STS or DANE. Every failure is the customer's (failed).
func (s *Sender) deliverMX(ctx context.Context, msg []byte, from, to string) delivery {
	t0 := time.Now()
	domain := domainOf(to)
	targets, d := s.resolveMX(ctx, domain)
	dnsMS := float64(time.Since(t0).Microseconds()) / 1000
	if d.err != nil {
		d.res.Timings.DNSMS = dnsMS
		d.res.Timings.TotalMS = dnsMS
		return d
	}
	var last delivery
	for _, tg := range targets {
		cfg := submit.Config{
			Addr: tg.addr,
			TLS:  submit.TLSOpportunistic,
			// An MX certificate is not checked (RFC 3207 section 4.1:
			// opportunistic TLS); a broken handshake still fails.
			TLSConfig: &tls.Config{ServerName: tg.host, InsecureSkipVerify: true},
			HelloName: s.cfg.helo(),
		}
		res, err := submit.Send(ctx, cfg, from, []string{to}, msg)
		last = delivery{res: res, hop: net.JoinHostPort(tg.host, strconv.Itoa(s.cfg.MXPort))}
		if err == nil {
			break
		}
		last.err, last.status = err, events.SentFailed
		var se *submit.Error
		switch {
		case errors.As(err, &se) && se.Refused():
			last.class, last.temporary = ClassMXRefused, fault.MarkedTemporary(err)
		case errors.As(err, &se) && se.Phase == submit.PhaseTLS:
			last.class, last.temporary = ClassMXTLS, false
		default:
			last.class, last.temporary = ClassMXUnreachable, true
		}
		if last.class == ClassMXRefused || ctx.Err() != nil {
			break // the MX answered: its word is final for this attempt
		}
	}
	last.res.Timings.DNSMS = dnsMS
	last.res.Timings.TotalMS = float64(time.Since(t0).Microseconds()) / 1000
	return last
}

// resolveMX returns the addresses to try for domain, or a failed delivery
// with class no_mx.
func (s *Sender) resolveMX(ctx context.Context, domain string) ([]mxTarget, delivery) {
	noMX := func(err error, temporary bool) ([]mxTarget, delivery) {
		return nil, delivery{hop: domain, err: err, status: events.SentFailed, class: ClassNoMX, temporary: temporary}
	}
	if domain == "" {
		return noMX(errors.New("the target address has no domain"), false)
	}
	var hosts []string
	mxs, err := s.deps.Resolver.LookupMX(ctx, domain)
	var de *net.DNSError
	switch {
	case err != nil && errors.As(err, &de) && de.IsNotFound, err == nil && len(mxs) == 0:
		hosts = []string{domain} // implicit MX: the domain's own address
	case err != nil:
		return noMX(fmt.Errorf("MX lookup for %s: %w", domain, err), dnsTemporary(err))
	case len(mxs) == 1 && strings.TrimSuffix(mxs[0].Host, ".") == "":
		return noMX(fmt.Errorf("%s publishes a null MX (RFC 7505): it accepts no mail", domain), false)
	default:
		hosts = s.orderMX(mxs)
	}
	var targets []mxTarget
	var lastErr error
	temporary := false
	port := strconv.Itoa(s.cfg.MXPort)
	for _, h := range hosts {
		if len(targets) >= maxMXAddresses {
			break
		}
		if isIP(h) {
			targets = append(targets, mxTarget{host: h, addr: net.JoinHostPort(h, port)})
			continue
		}
		addrs, err := s.deps.Resolver.LookupHost(ctx, h)
		if err != nil {
			lastErr = fmt.Errorf("address lookup for MX host %s: %w", h, err)
			temporary = temporary || dnsTemporary(err)
			continue
		}
		for _, a := range addrs {
			if len(targets) < maxMXAddresses {
				targets = append(targets, mxTarget{host: h, addr: net.JoinHostPort(a, port)})
			}
		}
	}
	if len(targets) == 0 {
		if lastErr == nil {
			lastErr = fmt.Errorf("no address for the MX hosts of %s", domain)
		}
		return noMX(lastErr, temporary)
	}
	return targets, delivery{}
}

// orderMX sorts MX hosts by preference and shuffles hosts of equal
// preference (RFC 5321 section 5.1), using Deps.Rand.
func (s *Sender) orderMX(mxs []*net.MX) []string {
	recs := make([]*net.MX, 0, len(mxs))
	for _, mx := range mxs {
		if h := strings.TrimSuffix(mx.Host, "."); h != "" {
			recs = append(recs, &net.MX{Host: h, Pref: mx.Pref})
		}
	}
	var b [4]byte
	for i := len(recs) - 1; i > 0; i-- {
		if _, err := s.deps.Rand.Read(b[:]); err != nil {
			break
		}
		j := int(binary.BigEndian.Uint32(b[:]) % uint32(i+1))
		recs[i], recs[j] = recs[j], recs[i]
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Pref < recs[j].Pref })
	hosts := make([]string, len(recs))
	for i, r := range recs {
		hosts[i] = r.Host
	}
	return hosts
}

// dnsTemporary reports whether a lookup failure may pass (a timeout or a
// server failure, not a name that does not exist).
func dnsTemporary(err error) bool {
	var de *net.DNSError
	if errors.As(err, &de) {
		return !de.IsNotFound && (de.IsTemporary || de.IsTimeout)
	}
	return true
}
