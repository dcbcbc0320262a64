package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

func (r *Receiver) newServer(tlsConfig *tls.Config) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{r: r, conn: c, remote: c.Conn().RemoteAddr().String()}, nil
	}))
	srv.Domain = r.cfg.banner()
	// go-smtp sets the read deadline before each command line; Data moves
	// it for the message's transfer.
	srv.ReadTimeout = r.cfg.CommandTimeout
	srv.WriteTimeout = r.cfg.Timeout
	srv.MaxMessageBytes = r.cfg.MaxBytes
	srv.MaxRecipients = MaxRecipients
	srv.TLSConfig = tlsConfig
	srv.ErrorLog = errorLog{r.log}
	return srv
}

// session is one SMTP connection's transaction state (go-smtp Session):
// the envelope sender and what the recipients are (return addresses,
// verified VERP addresses, postmaster).
type session struct {
	r          *Receiver
	conn       *smtp.Conn
	remote     string
	from       string
	rcpts      int
	returns    bool           // a return address is among the recipients
	bounces    []bounceTarget // the tests named by VERP recipients
	postmaster bool
}

var _ smtp.Session = (*session)(nil)

// Mail implements smtp.Session: any envelope sender, the null sender too.
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.Reset()
	s.from = from
	return nil
}

// Rcpt implements smtp.Session. It takes the return addresses, the VERP
// addresses of our probes (from the null sender only, with a token that
// verifies: bounces) and postmaster (RFC 5321 section 4.5.1); every other
// recipient gets 550 (not an open relay).
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	target, verr := s.r.verpTarget(to)
	switch {
	case s.r.acceptsRecipient(to):
		s.returns = true
	case target != nil && s.from == "", verr != nil && s.from == "":
		if verr != nil {
			s.r.metrics.rejected.WithLabelValues(ReasonVERPForged).Inc()
			s.r.log.Warn("bounce address refused: its token does not verify", "remote", s.remote, "rcpt", to)
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
				Message: fmt.Sprintf("<%s>: no such bounce address here", to)}
		}
		s.bounces = append(s.bounces, *target)
	case target != nil || verr != nil:
		s.r.metrics.rejected.WithLabelValues(ReasonVERPSender).Inc()
		s.r.log.Info("bounce address refused to a non-null sender", "remote", s.remote, "mail_from", s.from, "rcpt", to)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("<%s>: this address takes bounces (the null sender) only", to)}
	case s.r.isPostmaster(to):
		s.postmaster = true
	default:
		s.r.metrics.rejected.WithLabelValues(ReasonRecipient).Inc()
		s.r.log.Info("recipient refused", "remote", s.remote, "mail_from", s.from, "rcpt", to)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: fmt.Sprintf("<%s>: no such recipient here; this server only takes returned probes", to)}
	}
	s.rcpts++
	return nil
}

// Data implements smtp.Session: verify, store, and only then answer 250.
// The whole message must come within Config.Timeout, however slowly; at
// most Config.MaxBytes of it are held (go-smtp reads and drops the rest,
// then answers 552).
func (s *session) Data(rd io.Reader) error {
	_ = s.conn.Conn().SetReadDeadline(time.Now().Add(s.r.cfg.Timeout))
	msg, err := io.ReadAll(rd)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			s.r.metrics.rejected.WithLabelValues(ReasonTooLarge).Inc()
		}
		if isTimeout(err) {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
				Message: fmt.Sprintf("message not received within %s, closing", s.r.cfg.Timeout)}
		}
		return err
	}
	receivedAt := s.r.deps.Clock.Now()
	if !s.r.begin() {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down, try again later"}
	}
	defer s.r.inflight.Done()
	env := Envelope{From: s.from, Via: ModeSMTP, ReceivedAt: receivedAt, Remote: s.remote}
	if s.postmaster {
		s.r.takePostmaster(msg, env)
	}
	for _, t := range s.bounces {
		if _, err := s.r.TakeBounce(context.Background(), msg, t, env); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot store the bounce right now, try again later"}
		}
	}
	if !s.returns {
		return nil
	}
	_, err = s.r.Take(context.Background(), msg, env)
	var rej *Rejection
	var serr *StoreError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rej):
		code := smtp.EnhancedCode{5, 7, 1}
		if rej.Reason == ReasonMalformed || rej.Reason == ReasonTooLarge {
			code = smtp.EnhancedCode{5, 6, 0}
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: code, Message: "rejected: " + oneLine(rej.Error())}
	case errors.As(err, &serr):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot store the return right now, try again later"}
	default:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "temporary failure, try again later"}
	}
}

// Reset implements smtp.Session.
func (s *session) Reset() {
	s.from, s.rcpts, s.returns, s.bounces, s.postmaster = "", 0, false, nil, false
}

// Logout implements smtp.Session.
func (s *session) Logout() error { return nil }

// oneLine keeps an SMTP reply text on one line and short.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// errorLog sends go-smtp's connection errors to slog at debug level: an
// internet-facing SMTP server sees a steady trickle of broken clients.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) {
	l.log.Debug("smtp: " + fmt.Sprintf(format, v...))
}

func (l errorLog) Println(v ...any) { l.log.Debug("smtp: " + strings.TrimSpace(fmt.Sprintln(v...))) }
