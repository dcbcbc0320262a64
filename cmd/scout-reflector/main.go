// Command scout-reflector answers Email Scout round-trip probes on a
// customer's mail server. It verifies each probe's signed X-Scout-Probe
// header, stamps it and mails it back to the monitor's signed return
// address; anything else (foreign mail, bounces, auto-replies, reflections,
// forged or replayed probes) is left alone, silently.
//
// Input modes:
//
//	scout-reflector [flags]            pipe (default): the message on stdin,
//	                                   from ~/.forward, /etc/aliases, Exim, Sendmail
//	scout-reflector file [flags] PATH  the message in the file named by the last
//	                                   argument (IMail program aliases append it)
//	scout-reflector imap [flags]       watch a mailbox over IMAP (Exchange,
//	                                   Microsoft 365, Gmail, any IMAP server)
//	scout-reflector check [flags] [FILE]  print what would be done, send nothing
//
// Exit status (sysexits.h, which Postfix, Exim and Sendmail read): 0 when
// the message was reflected or ignored, or the reflection failed for good
// (logged; see docs/reflector.md); 75 (EX_TEMPFAIL) when sending failed for
// now, so the MTA keeps the message and retries; 78 (EX_CONFIG) when the
// configuration is broken. `check` exits 0 when it would reflect and 1 when
// it would ignore.
//
// The install guide is docs/reflector.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	// IMail and the Windows service manager start the binary without a
	// console; cobra must not refuse to run then.
	cobra.MousetrapHelpText = ""
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, env{
		args:      os.Args[1:],
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		lookupEnv: os.LookupEnv,
		now:       time.Now,
	})
	stop()
	os.Exit(code)
}
