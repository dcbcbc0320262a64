// Package logsms is the development provider: instead of sending an SMS it
// writes one readable line per message to an io.Writer (stdout, or the
// terminal of `scout dev`), e.g.
//
//	SMS to ACME on-call +15555550100 [GSM-7 129/160]: DOWN ACME mail round trip: ... Incident #inc-rtkkowtutap5
//
// It never fails, needs no credentials, and is refused in production.
package logsms

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/emailscout/emailscout/services/notifier/delivery"
	"github.com/emailscout/emailscout/services/notifier/internal/sms"
)

// Name is the provider name used in metrics and events.
const Name = "log"

// Provider writes would-be SMS to a writer. It is safe for concurrent use:
// lines are never interleaved.
type Provider struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a Provider writing to w.
func New(w io.Writer) *Provider { return &Provider{w: w} }

// Name implements the notifier's Provider: "log".
func (p *Provider) Name() string { return Name }

// Validate implements the notifier's Provider: it fails only without a
// writer.
func (p *Provider) Validate() error {
	if p.w == nil {
		return fmt.Errorf("log provider: no writer")
	}
	return nil
}

// Send writes one line for m. Its id is empty; a write error is temporary.
func (p *Provider) Send(_ context.Context, m delivery.Message) (string, error) {
	c := sms.Analyze(m.Text)
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := fmt.Fprintf(p.w, "SMS to %s %s [%s %d/%d]: %s\n", m.Contact, m.To, c.Encoding, c.Units, c.Limit, m.Text)
	if err != nil {
		return "", &delivery.Error{Provider: Name, Retry: true, Err: err}
	}
	return "", nil
}
