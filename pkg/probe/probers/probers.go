// Package probers maps a service check's kind to its prober, so that the
// sender and `scout check` run the same code for the same kind.
package probers

import (
	"context"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/imapprobe"
	"github.com/emailscout/emailscout/pkg/probe/pop3probe"
	"github.com/emailscout/emailscout/pkg/probe/smtpprobe"
)

// Prober runs one service-check dialogue against t; its only timeout is
// ctx's.
type Prober func(ctx context.Context, t probe.Target) probe.Result

// For returns the prober of kind (events.KindSMTP, KindIMAP, KindPOP3), or
// nil for any other kind.
func For(kind string) Prober {
	switch kind {
	case events.KindSMTP:
		return smtpprobe.Probe
	case events.KindIMAP:
		return imapprobe.Probe
	case events.KindPOP3:
		return pop3probe.Probe
	}
	return nil
}
