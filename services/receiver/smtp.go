package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/emersion/go-smtp"
)

func (r *Receiver) newServer(tlsConfig *tls.Config) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{r: r, remote: c.Conn().RemoteAddr().String()}, nil
	}))
	srv.Domain = r.cfg.banner()
	srv.ReadTimeout = r.cfg.Timeout
	srv.WriteTimeout = r.cfg.Timeout
	srv.MaxMessageBytes = r.cfg.MaxBytes
	srv.MaxRecipients = MaxRecipients
	srv.TLSConfig = tlsConfig
	srv.ErrorLog = errorLog{r.log}
	return srv
}

// session is one SMTP connection's transaction state (go-smtp Session).
type session struct {
	r      *Receiver
	remote string
	from   string
	rcpts  int
}

var _ smtp.Session = (*session)(nil)

// Mail implements smtp.Session: any envelope sender, the null sender too.
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.rcpts = from, 0
	return nil
}

// Rcpt implements smtp.Session: only return addresses (not an open relay).
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !s.r.acceptsRecipient(to) {
		s.r.metrics.rejected.WithLabelValues(ReasonRecipient).Inc()
		s.r.log.Info("recipient refused", "remote", s.remote, "mail_from", s.from, "rcpt", to)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: fmt.Sprintf("<%s>: no such recipient here; this server only takes returned probes", to)}
	}
	s.rcpts++
	return nil
}

// Data implements smtp.Session: verify, store, and only then answer 250.
func (s *session) Data(rd io.Reader) error {
	msg, err := io.ReadAll(rd)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			s.r.metrics.rejected.WithLabelValues(ReasonTooLarge).Inc()
		}
		return err
	}
	receivedAt := s.r.deps.Clock.Now()
	if !s.r.begin() {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down, try again later"}
	}
	defer s.r.inflight.Done()
	_, err = s.r.Take(context.Background(), msg, Envelope{From: s.from, Via: ModeSMTP, ReceivedAt: receivedAt, Remote: s.remote})
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
func (s *session) Reset() { s.from, s.rcpts = "", 0 }

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
