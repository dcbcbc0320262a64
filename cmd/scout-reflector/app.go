package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emailscout/emailscout/cmd/internal/flaghint"
	"github.com/emailscout/emailscout/pkg/buildinfo"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/spf13/cobra"
)

// Exit statuses from sysexits.h. Postfix's local(8) and pipe(8), Exim's
// pipe transport and Sendmail's prog mailer defer (keep and retry) on
// EX_TEMPFAIL and bounce on the others.
const (
	exitOK       = 0
	exitIgnored  = 1  // `check` only: the message would be ignored
	exitTempFail = 75 // EX_TEMPFAIL: try again later
	exitConfig   = 78 // EX_CONFIG: the configuration is broken
)

// env is everything run takes from the process, so that tests can run the
// command in-process.
type env struct {
	args      []string
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)
	now       func() time.Time
}

func (e env) getenv(k string) string {
	v, _ := e.lookupEnv(k)
	return v
}

// configError is a broken configuration: exit 78.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func configErrorf(format string, a ...any) error {
	return configError{fmt.Errorf(format, a...)}
}

// exitError carries an exit status chosen by a command (`check`).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode maps an error to the process exit status. A configuration error
// wins over a temporary one (a state directory we may not write is fixed by
// the administrator, not by waiting).
func exitCode(err error) int {
	var ce configError
	var ee exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ce):
		return exitConfig
	case fault.MarkedTemporary(err):
		return exitTempFail
	}
	// What is left are usage errors (an unknown subcommand, a missing
	// argument): a broken command line is a broken configuration. A
	// permanent failure to send a reflection never gets here: the modes log
	// it and return nil, as it must not bounce the probe
	// (docs/reflector.md).
	return exitConfig
}

// run executes the command line in e and returns the exit status.
func run(ctx context.Context, e env) int {
	root := newRoot(e)
	root.SetArgs(e.args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ee exitError
		if !errors.As(err, &ee) && !loggedError(err) {
			fmt.Fprintln(e.stderr, "scout-reflector:", err)
		}
	}
	return exitCode(err)
}

// logged marks an error that the mode has already written to its log.
type logged struct{ err error }

func (l logged) Error() string { return l.err.Error() }
func (l logged) Unwrap() error { return l.err }

func loggedError(err error) bool {
	var l logged
	return errors.As(err, &l)
}

// newRoot builds the command tree. The root command is pipe mode.
func newRoot(e env) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "scout-reflector",
		Short: "Answer Email Scout round-trip probes (pipe mode: the message on stdin)",
		Long: `scout-reflector answers Email Scout round-trip probes. Without a subcommand
it reads one message on stdin, as from ~/.forward or /etc/aliases:

  "|/usr/local/bin/scout-reflector --key-file=/home/webscout/.scout-reflector/keys"

Exit status: 0 reflected or ignored, 75 try again later, 78 broken configuration.
See docs/reflector.md for the install guide.`,
		Version:       buildinfo.Read().String(), // --version (pkg/buildinfo)
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.resolve(cmd, e, modePipe)
			if err != nil {
				return err
			}
			return runMessage(cmd.Context(), cfg, e, "")
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetVersionTemplate("scout-reflector {{.Version}}\n")
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetIn(e.stdin)
	// A mistyped flag in a .forward line is a broken configuration.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return configError{flaghint.Suggest(c.Flags(), err)} })
	o.bindCommon(root.PersistentFlags())

	file := &cobra.Command{
		Use:   "file [flags] PATH",
		Short: "Answer the message in the file named by the last argument (IMail program alias)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := o.resolve(cmd, e, modeFile)
			if err != nil {
				return err
			}
			return runMessage(cmd.Context(), cfg, e, args[len(args)-1])
		},
	}
	check := &cobra.Command{
		Use:   "check [flags] [FILE]",
		Short: "Print what would be done with a message (stdin or FILE) without sending anything",
		Long: `check reads one message (stdin, or FILE) and prints the verdict, the reason,
the probe's signed fields and the reflection's header, without sending and
without recording the probe as answered. Exit status: 0 it would reflect,
1 it would ignore, 78 broken configuration.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := o.resolve(cmd, e, modeCheck)
			if err != nil {
				return err
			}
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			return runCheck(cfg, e, path, o.sender, cmd.Flags().Changed("sender"))
		},
	}
	check.Flags().StringVar(&o.sender, "sender", "", "envelope sender to assume (default: $SENDER when set, else the mbox From line)")
	imapCmd := &cobra.Command{
		Use:   "imap [flags]",
		Short: "Watch a mailbox over IMAP, answer each probe and delete it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.resolve(cmd, e, modeIMAP)
			if err != nil {
				return err
			}
			return runIMAP(cmd.Context(), cfg, e)
		},
	}
	o.bindIMAP(imapCmd.Flags())
	checkLogin := &cobra.Command{
		Use:   "check-login [flags]",
		Short: "Log in to the IMAP mailbox and the SMTP output as configured, and say what works",
		Long: `check-login logs in as the configuration (--config) says, sending and
deleting nothing: to the IMAP mailbox of imap mode (greeting, capabilities,
TLS, LOGIN or AUTHENTICATE XOAUTH2/OAUTHBEARER, EXAMINE of the folder) and to
the SMTP output (greeting, EHLO, STARTTLS, AUTH). It prints what it sees
(never a password or token: an OAuth token's lifetime, scopes and roles) and,
when something fails, the problem and a hint. Exit status: 0 every login
works, 1 one failed, 78 broken configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.resolve(cmd, e, modeCheckLogin)
			if err != nil {
				return err
			}
			return runCheckLogin(cmd.Context(), cfg, e)
		},
	}
	o.bindIMAP(checkLogin.Flags())
	login := &cobra.Command{
		Use:   "login [flags]",
		Short: "Sign in once as the probe mailbox and write the refresh token file of provider refresh_token",
		Long: `login is the one-time delegated sign-in for an oauth block with
provider: refresh_token (imap.oauth, or smtp.oauth with --for smtp). With
--flow device (the default; RFC 8628) it shows an address and a code to
enter there; with --flow code it shows an address to open in a browser and
reads back the address the browser was sent to (authorization code with
PKCE). The refresh token goes to the block's refresh_token_file (mode 0600,
replaced atomically); no token is printed. Microsoft's endpoints follow from
tenant, Google's from token_url https://oauth2.googleapis.com/token (Google
allows its mail scope only with --flow code); others need --auth-url or
--device-auth-url. Exit status: 0 written, 1 the sign-in failed, 78 broken
configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.resolve(cmd, e, modeLogin)
			if err != nil {
				return err
			}
			if err := runLogin(cmd.Context(), cfg, e); err != nil {
				var ce configError
				if errors.As(err, &ce) {
					return err
				}
				fmt.Fprintln(e.stderr, "scout-reflector:", err)
				return exitError{code: exitIgnored}
			}
			return nil
		},
	}
	lf := login.Flags()
	lf.StringVar(&o.login.which, "for", "imap", "the oauth block to sign in for: imap (imap.oauth) or smtp (smtp.oauth)")
	lf.StringVar(&o.login.flow, "flow", flowDevice, "device (show a code to enter at an address) or code (open an address, paste back the redirect)")
	lf.StringVar(&o.login.authURL, "auth-url", "", "authorization endpoint (default: Microsoft's by tenant, or Google's)")
	lf.StringVar(&o.login.deviceAuthURL, "device-auth-url", "", "device authorization endpoint (default: Microsoft's by tenant, or Google's)")
	lf.StringVar(&o.login.redirectURL, "redirect-url", "http://localhost", "redirect URI registered for the app (flow code)")
	for _, c := range []*cobra.Command{file, check, imapCmd, checkLogin, login} {
		c.SetFlagErrorFunc(root.FlagErrorFunc())
		root.AddCommand(c)
	}
	return root
}
