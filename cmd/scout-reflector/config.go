package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Modes.
const (
	modePipe  = "pipe"
	modeFile  = "file"
	modeIMAP  = "imap"
	modeCheck = "check"
	// modeCheckLogin: check-login, a trial login to the IMAP mailbox and
	// the SMTP output.
	modeCheckLogin = "check-login"
	// modeLogin: login, the one-time delegated login that writes the
	// refresh token file of provider refresh_token.
	modeLogin = "login"
)

// Outputs.
const (
	outputSendmail = "sendmail"
	outputSMTP     = "smtp"
)

// Environment variables read by the command (never by library code).
const (
	envConfig       = "SCOUT_REFLECTOR_CONFIG"
	envKeys         = "SCOUT_REFLECTOR_KEYS"
	envSMTPPassword = "SCOUT_REFLECTOR_SMTP_PASSWORD"
	envIMAPPassword = "SCOUT_REFLECTOR_IMAP_PASSWORD"
	// The OAuth client secret of imap.oauth and smtp.oauth, when the block
	// names neither client_secret nor client_secret_file.
	envIMAPClientSecret = "SCOUT_REFLECTOR_IMAP_CLIENT_SECRET"
	envSMTPClientSecret = "SCOUT_REFLECTOR_SMTP_CLIENT_SECRET"
	envSender           = "SENDER" // set by Postfix local(8) and Exim; empty for a bounce
)

// Config is the reflector's configuration: the optional YAML file
// (--config), with command-line flags taking precedence. docs/reflector.md
// and docs/configuration.md list every key.
type Config struct {
	// Keys is a probe key list, "customer:keyid:base64-secret" entries
	// separated by ';', ',' or new lines (probemail.ParseKeys). Prefer
	// KeyFile: a command line is visible to every local user.
	Keys string `yaml:"keys"`
	// KeyFile holds a key list, one entry per line, '#' comments allowed.
	// It must not be accessible by group or others (chmod 600).
	KeyFile string `yaml:"key_file"`
	// Mailboxes are the probe addresses answered for (default: whatever
	// address the probe's To names, as long as its signature verifies).
	Mailboxes []string `yaml:"mailboxes"`
	// StateDir holds the record of answered probes (default
	// $HOME/.scout-reflector).
	StateDir string `yaml:"state_dir"`
	// MaxAge: probes signed longer ago are replays and are ignored.
	MaxAge time.Duration `yaml:"max_age"`
	// EnvelopeFrom is the reflections' envelope sender (sendmail -f, SMTP
	// MAIL FROM). Default: sendmail's own choice (the user running the
	// reflector); with SMTP output, the first mailbox or the SMTP user.
	EnvelopeFrom string `yaml:"envelope_from"`
	// Output is how reflections leave: "sendmail" (default in pipe and
	// file mode) or "smtp" (default in imap mode, and whenever SMTP.Addr is
	// set).
	Output string `yaml:"output"`
	// Sendmail is the sendmail(8) binary (default /usr/sbin/sendmail).
	Sendmail string `yaml:"sendmail"`
	// Timeout bounds one send (default 2m).
	Timeout time.Duration `yaml:"timeout"`
	// TLSCAFile is a PEM file of CA certificates to trust for SMTP and IMAP
	// (default: the system's roots).
	TLSCAFile string `yaml:"tls_ca_file"`
	// LogFile receives log lines (appended, mode 0600) instead of stderr.
	LogFile string `yaml:"log_file"`
	// Verbose logs every decision, ignored mail included.
	Verbose bool `yaml:"verbose"`

	SMTP SMTPConfig `yaml:"smtp"`
	IMAP IMAPConfig `yaml:"imap"`
}

// SMTPConfig is the SMTP submission output.
type SMTPConfig struct {
	Addr         string `yaml:"addr"`          // host:port
	TLS          string `yaml:"tls"`           // none, opportunistic, starttls, implicit; default by port and AUTH
	Username     string `yaml:"username"`      // AUTH PLAIN (default in imap mode: the IMAP username)
	Password     string `yaml:"password"`      // prefer PasswordFile or $SCOUT_REFLECTOR_SMTP_PASSWORD
	PasswordFile string `yaml:"password_file"` // must not be accessible by group or others
	Helo         string `yaml:"helo"`          // EHLO name (default: the host name)
	// OAuth, when set, logs in with AUTH XOAUTH2 or OAUTHBEARER (RFC 7628)
	// and an OAuth 2.0 token from pkg/mailauth instead of a password, as
	// Username. In imap mode without a username of its own, the SMTP output
	// shares the IMAP login, OAuth included.
	OAuth *mailauth.Config `yaml:"oauth"`
}

// IMAPConfig is imap mode's mailbox.
type IMAPConfig struct {
	Addr         string        `yaml:"addr"`          // host:port
	TLS          string        `yaml:"tls"`           // implicit (default for port 993), starttls (default otherwise), none (loopback only)
	Username     string        `yaml:"username"`      //
	Password     string        `yaml:"password"`      // prefer PasswordFile or $SCOUT_REFLECTOR_IMAP_PASSWORD
	PasswordFile string        `yaml:"password_file"` // must not be accessible by group or others
	Folder       string        `yaml:"folder"`        // default INBOX
	IdleRefresh  time.Duration `yaml:"idle_refresh"`  // IDLE is re-issued this often (default 9m; RFC 2177: under 29m)
	PollInterval time.Duration `yaml:"poll_interval"` // scan interval when IDLE is not offered (default 1m)
	// FastPoll is the scan interval around each predicted probe arrival
	// (dueProbes: from 2 s before to 5 s after), instead of waiting for
	// the server's IDLE notification. Default 100ms; 0 turns it off.
	FastPoll time.Duration `yaml:"fast_poll"`
	// OAuth, when set, logs in with AUTHENTICATE XOAUTH2 or OAUTHBEARER
	// and an OAuth 2.0 token from pkg/mailauth instead of LOGIN with a
	// password (Microsoft 365, Google Workspace). Secrets come from files
	// or environment variables; inline ones (client_secret, access_token)
	// make the configuration file a secret file (mode 0600).
	OAuth *mailauth.Config `yaml:"oauth"`
	// RenewBeforeExpiry: with OAuth, a session logs out and in again with
	// a new token this long before its token expires (Exchange Online ends
	// sessions whose token expired). Default 1m; keep it below the token
	// cache's renewal margin (12 min for 1 h tokens, see mailauth.Cache).
	// 0 turns it off.
	RenewBeforeExpiry time.Duration `yaml:"renew_before_expiry"`
}

func defaultConfig() Config {
	return Config{
		MaxAge:   reflector.DefaultMaxAge,
		Sendmail: "/usr/sbin/sendmail",
		Timeout:  2 * time.Minute,
		IMAP:     IMAPConfig{Folder: "INBOX", IdleRefresh: 9 * time.Minute, PollInterval: time.Minute, FastPoll: 100 * time.Millisecond, RenewBeforeExpiry: time.Minute},
	}
}

// settings pairs each file key with its flag, for messages that name where
// a value came from.
var settings = [][2]string{
	{"keys", "keys"}, {"key_file", "key-file"}, {"mailboxes", "mailbox"}, {"state_dir", "state-dir"},
	{"max_age", "max-age"}, {"envelope_from", "envelope-from"}, {"output", "output"}, {"sendmail", "sendmail"},
	{"timeout", "timeout"}, {"tls_ca_file", "tls-ca-file"}, {"log_file", "log-file"}, {"verbose", "verbose"},
	{"smtp.addr", "smtp"}, {"smtp.tls", "smtp-tls"}, {"smtp.username", "smtp-user"},
	{"smtp.password_file", "smtp-password-file"}, {"smtp.helo", "smtp-helo"}, {"smtp.password", ""},
	{"imap.addr", "imap"}, {"imap.tls", "imap-tls"}, {"imap.username", "imap-user"},
	{"imap.password_file", "imap-password-file"}, {"imap.folder", "imap-folder"},
	{"imap.idle_refresh", "idle-refresh"}, {"imap.poll_interval", "poll-interval"}, {"imap.fast_poll", "fast-poll"}, {"imap.password", ""},
}

// options holds the parsed flags of one run.
type options struct {
	cfg        Config // flags are bound to its fields
	configPath string
	sender     string // check --sender
	login      loginOptions
}

func (o *options) bindCommon(fs *pflag.FlagSet) {
	d := defaultConfig()
	c := &o.cfg
	fs.StringVarP(&o.configPath, "config", "c", "", "YAML configuration file (default $"+envConfig+")")
	fs.StringVar(&c.Keys, "keys", "", "probe keys customer:keyid:base64-secret[;...] (visible in ps: prefer --key-file or $"+envKeys+")")
	fs.StringVar(&c.KeyFile, "key-file", "", "file of probe keys, one customer:keyid:base64-secret per line (mode 0600)")
	fs.StringSliceVar(&c.Mailboxes, "mailbox", nil, "probe address to answer for (repeat for several; default: the probe's To)")
	fs.StringVar(&c.StateDir, "state-dir", "", "directory recording answered probes (default $HOME/.scout-reflector)")
	fs.DurationVar(&c.MaxAge, "max-age", d.MaxAge, "ignore probes signed longer ago than this (replays)")
	fs.StringVar(&c.EnvelopeFrom, "envelope-from", "", "envelope sender of reflections")
	fs.StringVar(&c.Output, "output", "", "how reflections leave: sendmail or smtp (default sendmail; smtp in imap mode or with --smtp)")
	fs.StringVar(&c.Sendmail, "sendmail", d.Sendmail, "sendmail binary")
	fs.DurationVar(&c.Timeout, "timeout", d.Timeout, "time limit for sending one reflection")
	fs.StringVar(&c.TLSCAFile, "tls-ca-file", "", "PEM file of CA certificates to trust for SMTP and IMAP (default: system roots)")
	fs.StringVar(&c.LogFile, "log-file", "", "append log lines to this file instead of stderr")
	fs.BoolVarP(&c.Verbose, "verbose", "v", false, "log every decision, ignored mail included")
	fs.StringVar(&c.SMTP.Addr, "smtp", "", "SMTP submission server host:port (implies --output smtp)")
	fs.StringVar(&c.SMTP.TLS, "smtp-tls", "", "none, opportunistic, starttls or implicit (default: implicit on port 465, starttls with AUTH, else opportunistic)")
	fs.StringVar(&c.SMTP.Username, "smtp-user", "", "SMTP AUTH user (password: --smtp-password-file or $"+envSMTPPassword+")")
	fs.StringVar(&c.SMTP.PasswordFile, "smtp-password-file", "", "file holding the SMTP password (mode 0600)")
	fs.StringVar(&c.SMTP.Helo, "smtp-helo", "", "EHLO name (default: this host's name)")
}

func (o *options) bindIMAP(fs *pflag.FlagSet) {
	d := defaultConfig().IMAP
	c := &o.cfg.IMAP
	fs.StringVar(&c.Addr, "imap", "", "IMAP server host:port")
	fs.StringVar(&c.TLS, "imap-tls", "", "implicit, starttls or none (default: implicit on port 993, else starttls; none only on loopback)")
	fs.StringVar(&c.Username, "imap-user", "", "IMAP user (password: --imap-password-file or $"+envIMAPPassword+")")
	fs.StringVar(&c.PasswordFile, "imap-password-file", "", "file holding the IMAP password (mode 0600)")
	fs.StringVar(&c.Folder, "imap-folder", d.Folder, "folder to watch")
	fs.DurationVar(&c.IdleRefresh, "idle-refresh", d.IdleRefresh, "re-issue IDLE this often (RFC 2177 asks for less than 29m)")
	fs.DurationVar(&c.PollInterval, "poll-interval", d.PollInterval, "scan this often when the server does not offer IDLE")
	fs.DurationVar(&c.FastPoll, "fast-poll", d.FastPoll, "scan this often around each predicted probe arrival (0: wait for IDLE)")
}

// resolved is what a mode runs with.
type resolved struct {
	Config
	mode         string
	keys         *probemail.Keyring
	smtpPassword string
	imapPassword string
	rootCAs      *x509.CertPool // nil: system roots
	// imapLogin and smtpLogin are the OAuth logins of imap.oauth and
	// smtp.oauth (nil without); in imap mode the SMTP output may share the
	// IMAP one (the same token cache).
	imapLogin *mailauth.Login
	smtpLogin *mailauth.Login
	// login: the flags of `login` and the oauth block it works with.
	login      loginOptions
	loginOAuth *mailauth.Config
}

// resolve merges defaults, the config file and the flags, validates the
// result and loads the secrets. Every problem is reported, each naming the
// flag, or the file, line and key it came from.
func (o *options) resolve(cmd *cobra.Command, e env, mode string) (*resolved, error) {
	fs := cmd.Flags()
	type saved struct {
		name  string
		value string
		slice []string
		isSl  bool
	}
	var changed []saved
	set := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) {
		set[f.Name] = true
		if f.Name == "config" || f.Name == "sender" {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			changed = append(changed, saved{name: f.Name, slice: sv.GetSlice(), isSl: true})
			return
		}
		changed = append(changed, saved{name: f.Name, value: f.Value.String()})
	})
	path := o.configPath
	if path == "" {
		path = e.getenv(envConfig)
	}
	o.cfg = defaultConfig()
	src := source{flags: set}
	if path != "" {
		lines, secrets, err := loadConfigFile(path, &o.cfg)
		if err != nil {
			return nil, configError{err}
		}
		src.file, src.lines = path, lines
		if secrets {
			if err := checkPrivate(path, "configuration file with secrets"); err != nil {
				return nil, configError{err}
			}
		}
	}
	// Flags win over the file: set them again on top of it.
	for _, s := range changed {
		f := fs.Lookup(s.name)
		var err error
		if s.isSl {
			err = f.Value.(pflag.SliceValue).Replace(s.slice)
		} else {
			err = f.Value.Set(s.value)
		}
		if err != nil {
			return nil, configErrorf("--%s: %w", s.name, err)
		}
	}
	r := &resolved{Config: o.cfg, mode: mode, login: o.login}
	if err := r.complete(e, src); err != nil {
		return nil, configError{err}
	}
	return r, nil
}

// source says where a setting came from.
type source struct {
	flags map[string]bool
	file  string
	lines map[string]int // key path -> line in file
}

// where names a setting for an error message: "--smtp-tls" when it came
// from the command line, "reflector.yaml:12: smtp.tls" from the file.
func (s source) where(key string) string {
	for _, kv := range settings {
		if kv[0] == key && kv[1] != "" && s.flags[kv[1]] {
			return "--" + kv[1]
		}
	}
	if line, ok := s.lines[key]; ok {
		return fmt.Sprintf("%s:%d: %s", s.file, line, key)
	}
	return key
}

// complete applies the mode's defaults, validates, and loads keys,
// passwords and CA certificates.
func (r *resolved) complete(e env, src source) error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", src.where(key), fmt.Sprintf(format, a...)))
	}
	c := &r.Config
	if r.mode == modeLogin {
		return r.completeLogin(e, src)
	}

	for i, m := range c.Mailboxes {
		a, err := mail.ParseAddress(m)
		if err != nil || a.Address != strings.TrimSpace(m) {
			bad("mailboxes", "%q is not a plain address such as webscout@example.com", m)
			continue
		}
		c.Mailboxes[i] = strings.ToLower(a.Address)
	}
	if c.EnvelopeFrom != "" {
		if a, err := mail.ParseAddress(c.EnvelopeFrom); err != nil || a.Address != c.EnvelopeFrom {
			bad("envelope_from", "%q is not a plain address", c.EnvelopeFrom)
		}
	}
	if c.MaxAge < time.Minute {
		bad("max_age", "%v is shorter than 1m (a duration such as 48h)", c.MaxAge)
	}
	if c.Timeout < time.Second {
		bad("timeout", "%v is shorter than 1s (a duration such as 2m)", c.Timeout)
	}
	if c.StateDir == "" {
		home := e.getenv("HOME")
		if home == "" && runtime.GOOS == "windows" {
			home = e.getenv("USERPROFILE")
		}
		if home == "" && r.mode != modeCheckLogin {
			bad("state_dir", "not set, and HOME is not set to default it to $HOME/.scout-reflector")
		} else {
			c.StateDir = filepath.Join(home, ".scout-reflector")
		}
	}

	// MTAs run the pipe in their spool directory (Postfix: the queue
	// directory): a relative path would point there.
	if r.mode == modePipe || r.mode == modeFile {
		for _, p := range [][2]string{{"state_dir", c.StateDir}, {"key_file", c.KeyFile}, {"log_file", c.LogFile}} {
			if p[1] != "" && !filepath.IsAbs(p[1]) {
				bad(p[0], "%q is relative; the MTA runs the reflector in its spool directory: give an absolute path", p[1])
			}
		}
	}

	if c.Output == "" {
		c.Output = outputSendmail
		if r.watchesIMAP() || c.SMTP.Addr != "" {
			c.Output = outputSMTP
		}
	}
	switch c.Output {
	case outputSendmail:
		if c.Sendmail == "" {
			bad("sendmail", "is empty")
		}
	case outputSMTP:
		if c.SMTP.Addr == "" {
			bad("smtp.addr", "SMTP output needs the submission server's host:port (--smtp)")
		} else if _, _, err := net.SplitHostPort(c.SMTP.Addr); err != nil {
			bad("smtp.addr", "%q is not host:port", c.SMTP.Addr)
		}
	default:
		bad("output", "%q is not sendmail or smtp", c.Output)
	}

	if r.watchesIMAP() {
		errs = append(errs, r.completeIMAP(e, src)...)
	}
	if c.Output == outputSMTP {
		errs = append(errs, r.completeSMTP(e, src)...)
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		r.rootCAs = x509.NewCertPool()
		if err != nil {
			bad("tls_ca_file", "%v", err)
		} else if !r.rootCAs.AppendCertsFromPEM(pem) {
			bad("tls_ca_file", "%s holds no PEM certificate", c.TLSCAFile)
		}
	}
	if r.mode != modeCheckLogin {
		keys, err := r.loadKeys(e, src)
		if err != nil {
			errs = append(errs, err)
		}
		r.keys = keys
	}
	return errors.Join(errs...)
}

// watchesIMAP reports whether the run logs in to the IMAP mailbox: imap
// mode, and check-login when the configuration names an IMAP server.
func (r *resolved) watchesIMAP() bool {
	return r.mode == modeIMAP || (r.mode == modeCheckLogin && r.IMAP.Addr != "")
}

func (r *resolved) completeSMTP(e env, src source) []error {
	var errs []error
	s := &r.SMTP
	if s.Username == "" && r.watchesIMAP() {
		s.Username = r.IMAP.Username
		r.smtpPassword = r.imapPassword
		if s.OAuth == nil {
			r.smtpLogin = r.imapLogin
		}
	}
	switch {
	case s.OAuth != nil:
		if s.Password != "" || s.PasswordFile != "" {
			errs = append(errs, fmt.Errorf("%s: give a password or an oauth block, not both", src.where("smtp.oauth")))
		}
		r.smtpPassword = ""
		if s.Username == "" {
			errs = append(errs, fmt.Errorf("%s: OAuth needs the mailbox's user name: smtp.username (--smtp-user)", src.where("smtp.oauth")))
			break
		}
		login, oerrs := r.completeOAuth(e, src, "smtp", s.OAuth, s.Username, envSMTPClientSecret)
		errs = append(errs, oerrs...)
		r.smtpLogin = login
	case r.smtpLogin != nil:
		// the IMAP login's OAuth
	case s.Username != "":
		pw, err := password(s.Password, s.PasswordFile, e.getenv(envSMTPPassword), src, "smtp")
		if err != nil {
			errs = append(errs, err)
		} else if pw != "" {
			r.smtpPassword = pw
		}
		if r.smtpPassword == "" {
			errs = append(errs, fmt.Errorf("%s: AUTH needs a password: smtp.password_file (--smtp-password-file) or $%s", src.where("smtp.username"), envSMTPPassword))
		}
	}
	if s.TLS == "" {
		_, port, _ := net.SplitHostPort(s.Addr)
		switch {
		case port == "465":
			s.TLS = submit.TLSImplicit
		case s.Username != "" || s.OAuth != nil || r.smtpLogin != nil:
			s.TLS = submit.TLSStartTLS
		default:
			s.TLS = submit.TLSOpportunistic
		}
	}
	switch s.TLS {
	case submit.TLSNone, submit.TLSOpportunistic, submit.TLSStartTLS, submit.TLSImplicit:
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not none, opportunistic, starttls or implicit", src.where("smtp.tls"), s.TLS))
	}
	if r.EnvelopeFrom == "" {
		switch {
		case len(r.Mailboxes) > 0:
			r.EnvelopeFrom = r.Mailboxes[0]
		case strings.Contains(s.Username, "@"):
			r.EnvelopeFrom = s.Username
		default:
			errs = append(errs, fmt.Errorf("%s: SMTP output needs an envelope sender: set envelope_from (--envelope-from) or mailboxes (--mailbox)", src.where("envelope_from")))
		}
	}
	return errs
}

func (r *resolved) completeIMAP(e env, src source) []error {
	var errs []error
	m := &r.IMAP
	host, port, err := net.SplitHostPort(m.Addr)
	switch {
	case m.Addr == "":
		errs = append(errs, fmt.Errorf("%s: imap mode needs the IMAP server's host:port (--imap)", src.where("imap.addr")))
	case err != nil:
		errs = append(errs, fmt.Errorf("%s: %q is not host:port", src.where("imap.addr"), m.Addr))
	}
	if m.TLS == "" {
		m.TLS = "starttls"
		if port == "993" {
			m.TLS = "implicit"
		}
	}
	switch m.TLS {
	case "implicit", "starttls":
	case "none":
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("%s: none would send the password in clear to %s; it is allowed only on loopback", src.where("imap.tls"), host))
		}
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not implicit, starttls or none", src.where("imap.tls"), m.TLS))
	}
	if m.Username == "" {
		errs = append(errs, fmt.Errorf("%s: imap mode needs the mailbox's user name (--imap-user)", src.where("imap.username")))
	}
	if m.OAuth != nil {
		if m.Password != "" || m.PasswordFile != "" {
			errs = append(errs, fmt.Errorf("%s: give a password or an oauth block, not both", src.where("imap.oauth")))
		}
		if m.Username != "" {
			login, oerrs := r.completeOAuth(e, src, "imap", m.OAuth, m.Username, envIMAPClientSecret)
			errs = append(errs, oerrs...)
			r.imapLogin = login
		}
		if m.RenewBeforeExpiry < 0 || m.RenewBeforeExpiry >= 29*time.Minute {
			errs = append(errs, fmt.Errorf("%s: %v is not between 0 and 29m", src.where("imap.renew_before_expiry"), m.RenewBeforeExpiry))
		}
	} else {
		pw, err := password(m.Password, m.PasswordFile, e.getenv(envIMAPPassword), src, "imap")
		if err != nil {
			errs = append(errs, err)
		} else if pw == "" {
			errs = append(errs, fmt.Errorf("%s: imap mode needs a password (imap.password_file, --imap-password-file or $%s) or an oauth block (imap.oauth)", src.where("imap.password_file"), envIMAPPassword))
		}
		r.imapPassword = pw
	}
	if m.Folder == "" {
		errs = append(errs, fmt.Errorf("%s: is empty", src.where("imap.folder")))
	}
	if m.IdleRefresh < time.Second || m.IdleRefresh > 29*time.Minute {
		errs = append(errs, fmt.Errorf("%s: %v is not between 1s and 29m (RFC 2177)", src.where("imap.idle_refresh"), m.IdleRefresh))
	}
	if m.PollInterval < time.Second {
		errs = append(errs, fmt.Errorf("%s: %v is shorter than 1s", src.where("imap.poll_interval"), m.PollInterval))
	}
	if m.FastPoll != 0 && (m.FastPoll < 10*time.Millisecond || m.FastPoll > 10*time.Second) {
		errs = append(errs, fmt.Errorf("%s: %v is not 0 (off) or between 10ms and 10s", src.where("imap.fast_poll"), m.FastPoll))
	}
	return errs
}

// password picks a password: the file, else the config value, else the
// environment variable.
func password(inline, file, fromEnv string, src source, section string) (string, error) {
	if file != "" {
		if err := checkPrivate(file, "password file"); err != nil {
			return "", fmt.Errorf("%s: %w", src.where(section+".password_file"), err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", src.where(section+".password_file"), err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if inline != "" {
		return inline, nil
	}
	return fromEnv, nil
}

// loadKeys reads the probe keys from exactly one source: keys (--keys),
// key_file (--key-file), or else $SCOUT_REFLECTOR_KEYS.
func (r *resolved) loadKeys(e env, src source) (*probemail.Keyring, error) {
	switch {
	case r.Keys != "" && r.KeyFile != "":
		return nil, fmt.Errorf("%s and %s: give the probe keys once", src.where("keys"), src.where("key_file"))
	case r.KeyFile != "":
		if err := checkPrivate(r.KeyFile, "key file"); err != nil {
			return nil, fmt.Errorf("%s: %w", src.where("key_file"), err)
		}
		b, err := os.ReadFile(r.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.where("key_file"), err)
		}
		k, err := probemail.ParseKeys(stripComments(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", src.where("key_file"), r.KeyFile, err)
		}
		return k, nil
	case r.Keys != "":
		k, err := probemail.ParseKeys(r.Keys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.where("keys"), err)
		}
		return k, nil
	}
	if v := e.getenv(envKeys); v != "" {
		k, err := probemail.ParseKeys(v)
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", envKeys, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("no probe keys: set --key-file (key_file), --keys (keys) or $%s", envKeys)
}

// stripComments drops '#' comment lines and blank lines of a key file.
func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// checkPrivate refuses a secret file that group or others may read or
// write, like ssh does for private keys. Windows has no such mode bits
// (ACLs apply); the check is skipped there.
func checkPrivate(path, what string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s is accessible by group or others (mode %04o): it holds secrets; run chmod 600 %s", what, path, perm, path)
	}
	return nil
}

// inlineSecrets are the keys whose presence makes the configuration file
// a secret file, which must then be mode 0600.
var inlineSecrets = []string{"keys", "smtp.password", "imap.password",
	"imap.oauth.client_secret", "imap.oauth.access_token", "smtp.oauth.client_secret", "smtp.oauth.access_token"}

// loadConfigFile decodes the YAML file at path onto cfg, refusing unknown
// keys. It returns each key's line (for messages) and whether the file holds
// secrets (keys or passwords), which must then be private.
func loadConfigFile(path string, cfg *Config) (map[string]int, bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("configuration file: %w", err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]int{}, false, nil
		}
		return nil, false, yamlError(path, err, nil)
	}
	lines := map[string]int{}
	keyLines(&doc, "", lines)
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, false, yamlError(path, err, lines)
	}
	secrets := false
	for _, k := range inlineSecrets {
		if _, ok := lines[k]; ok {
			secrets = true
		}
	}
	return lines, secrets, nil
}

// keyLines records the line of each mapping key, as a dotted path.
func keyLines(n *yaml.Node, prefix string, out map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keyLines(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := prefix + n.Content[i].Value
			out[k] = n.Content[i].Line
			keyLines(n.Content[i+1], k+".", out)
		}
	}
}

var (
	yamlLine    = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlUnknown = regexp.MustCompile(`^field (\S+) not found in type (main|mailauth)\.(\w+)$`)
	yamlType    = regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
)

// yamlError rewrites yaml.v3's messages as "file:line: message", naming
// unknown keys with their section (lines, the key paths by line, tells
// imap.oauth from smtp.oauth; nil when unknown).
func yamlError(path string, err error, lines map[string]int) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var errs []error
	for _, m := range msgs {
		where, line := path, 0
		if g := yamlLine.FindStringSubmatch(m); g != nil {
			where, m = path+":"+g[1], g[2]
			line, _ = strconv.Atoi(g[1])
		}
		if g := yamlUnknown.FindStringSubmatch(m); g != nil {
			key := map[string]string{"SMTPConfig": "smtp.", "IMAPConfig": "imap."}[g[3]] + g[1]
			if g[2] == "mailauth" {
				key = "oauth." + g[1]
				for k, l := range lines {
					if l == line && strings.HasSuffix(k, ".oauth."+g[1]) {
						key = k
					}
				}
			}
			m = fmt.Sprintf("unknown key %q", key)
		} else if g := yamlType.FindStringSubmatch(m); g != nil {
			want := map[string]string{"time.Duration": "a duration such as 90s or 10m", "bool": "true or false",
				"string": "a string", "[]string": "a list of strings", "mailauth.Secret": "a string",
				"mailauth.Config": "an oauth block (provider, tenant, client_id, ...)"}[g[2]]
			if want == "" {
				want = g[2]
			}
			m = fmt.Sprintf("%s is not %s", strconv.Quote(g[1]), want)
		}
		errs = append(errs, fmt.Errorf("%s: %s", where, m))
	}
	return errors.Join(errs...)
}

// tlsConfig returns the TLS settings for a server name.
func (r *resolved) tlsConfig(serverName string) *tls.Config {
	return &tls.Config{ServerName: serverName, RootCAs: r.rootCAs, MinVersion: tls.VersionTLS12}
}
