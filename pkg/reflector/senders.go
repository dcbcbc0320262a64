package reflector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/submit"
)

// Sendmail submits through the local MTA's sendmail(8) interface, which
// Postfix, Exim and Sendmail all provide.
type Sendmail struct {
	// Path of the sendmail binary; empty means /usr/sbin/sendmail.
	Path string
}

// Exit codes of sendmail(8) from sysexits.h that may pass on retry.
var temporarySendmailExits = map[int]bool{
	69: true, // EX_UNAVAILABLE
	71: true, // EX_OSERR
	74: true, // EX_IOERR
	75: true, // EX_TEMPFAIL
}

// Send implements Sender: `sendmail -oi -f <from> -- <to...>` (with -t
// semantics, the recipients come from the message; the explicit list keeps
// aliases or Bcc out of it). A missing binary or a temporary exit status is
// a temporary error, so the MTA retries delivery to the reflector.
func (s Sendmail) Send(ctx context.Context, from string, to []string, msg []byte) error {
	path := s.Path
	if path == "" {
		path = "/usr/sbin/sendmail"
	}
	args := []string{"-oi"}
	if from != "" {
		args = append(args, "-f", from)
	}
	args = append(args, "--")
	args = append(args, to...)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	detail := strings.TrimSpace(stderr.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		err = fmt.Errorf("%s exited with status %d: %s", path, code, detail)
		if temporarySendmailExits[code] || code < 0 {
			return fault.Temporary(err)
		}
		return err
	}
	// The binary is missing or not executable: fixable, so retry later.
	return fault.Temporary(fmt.Errorf("run %s: %w", path, err))
}

// SMTP submits to an SMTP server (a submission port or a relay).
type SMTP struct {
	Config submit.Config
	// Pool, when not nil, carries the reflections over kept sessions
	// (submit.Pool, made with Config): a long-running reflector (imap
	// mode) then connects, negotiates TLS and logs in once for probes that
	// come in quick succession, not once per reflection.
	Pool *submit.Pool
}

// Send implements Sender. Errors are *submit.Error: 4xx replies and network
// failures are temporary.
func (s SMTP) Send(ctx context.Context, from string, to []string, msg []byte) error {
	if s.Pool != nil {
		_, err := s.Pool.Send(ctx, from, to, msg)
		return err
	}
	_, err := submit.Send(ctx, s.Config, from, to, msg)
	return err
}
