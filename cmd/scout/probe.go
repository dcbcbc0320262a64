package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, func(getenv func(string) string) *cobra.Command {
		return newProbeCmd(getenv, time.Now, rand.Reader)
	})
}

// probeOptions are the flags of `scout probe`.
type probeOptions struct {
	keys, keyFile, keyID, customer string
	check, to, returnTo, site      string
	attempt                        int
}

// newProbeCmd is `scout probe`: it writes one signed probe message
// (probemail.Build: RFC 5322, CRLF line ends) on stdout, as a sender would
// submit it, so that `scout probe ... | scout-reflector check` tests a
// reflector installation without a monitor. getenv supplies the default of
// --keys ($SCOUT_PROBE_KEYS); now is the probe's start (its t= field); rnd
// makes the test id.
func newProbeCmd(getenv func(string) string, now func() time.Time, rnd io.Reader) *cobra.Command {
	var o probeOptions
	cmd := &cobra.Command{
		Use:   "probe --check ID --to ADDRESS --return ADDRESS (--keys SPEC | --key-file FILE)",
		Short: "Write a signed probe message to stdout (to test a reflector: scout probe ... | scout-reflector check)",
		Long: `probe writes one signed round-trip probe on stdout, exactly as a sender
builds it: the X-Scout-Probe header signed (HMAC-SHA256) for the mailbox --to,
with the return address --return, started now, attempt 1. Pipe it into
"scout-reflector check" to see what a reflector installation would do with it,
or save it and feed it to the .forward program by hand.

The key is the first one of --keys (default $SCOUT_PROBE_KEYS) or of the key
file (customer:keyid:secret lines, # comments allowed); --customer picks the
key that signs that customer's probes (its first), --key-id a key by its id.
A reflector answers the probe only if it has that key and the probe is
addressed to its mailbox: the signature covers the To address.`,
		Example: `  (umask 077; scout keygen acme > keys)    # mode 0600: scout-reflector refuses a key file others can read
  scout probe --key-file keys --check acme-roundtrip --to webscout@acme.example \
      --return scout@eu-west.return.test | scout-reflector check --key-file "$PWD/keys"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			msg, err := o.build(cmd, now(), rnd)
			if err != nil {
				return exitError{code: 2, err: err}
			}
			_, err = cmd.OutOrStdout().Write(msg)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.keys, "keys", getenv("SCOUT_PROBE_KEYS"), "probe keys, customer:keyid:base64-secret entries separated by ; , or new lines (default $SCOUT_PROBE_KEYS)")
	f.StringVar(&o.keyFile, "key-file", "", "file of probe keys, one customer:keyid:base64-secret per line, # comments (the reflector's key file)")
	f.StringVar(&o.keyID, "key-id", "", "sign with this key id (default: the first key listed)")
	f.StringVar(&o.customer, "customer", "", "sign with this customer's signing key, its first one listed (default: the first key listed)")
	f.StringVar(&o.check, "check", "", "check id of the probe, [a-z0-9_-]{1,63} (required)")
	f.StringVar(&o.to, "to", "", "the probe mailbox, user@domain: the reflector's mailbox (required)")
	f.StringVar(&o.returnTo, "return", "", "the signed return address, user@domain: where the reflector sends the reflection (required)")
	f.StringVar(&o.site, "site", "manual", "site name of the probe, [a-z0-9_-]{1,63}")
	f.IntVar(&o.attempt, "attempt", 1, "attempt number, 1 to 99")
	return cmd
}

// build returns the signed probe. Errors name the flag at fault.
func (o probeOptions) build(cmd *cobra.Command, started time.Time, rnd io.Reader) ([]byte, error) {
	var missing []string
	for _, f := range []struct{ name, v string }{{"--check", o.check}, {"--to", o.to}, {"--return", o.returnTo}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if !events.ValidToken(o.check) {
		return nil, fmt.Errorf("--check %q is not [a-z0-9_-]{1,63}", o.check)
	}
	if !events.ValidToken(o.site) {
		return nil, fmt.Errorf("--site %q is not [a-z0-9_-]{1,63}", o.site)
	}
	spec, source := o.keys, "--keys"
	switch {
	case o.keyFile != "" && cmd.Flags().Changed("keys"):
		return nil, errors.New("give --keys or --key-file, not both")
	case o.keyFile != "":
		data, err := os.ReadFile(o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--key-file: %w", err)
		}
		spec, source = stripComments(string(data)), "--key-file "+o.keyFile
	case spec == "":
		return nil, errors.New("no probe key: give --keys, --key-file or set SCOUT_PROBE_KEYS (make one with scout keygen CUSTOMER)")
	case !cmd.Flags().Changed("keys"):
		source = "SCOUT_PROBE_KEYS"
	}
	ring, err := probemail.ParseKeys(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var key probemail.Key
	switch {
	case o.keyID != "":
		k, ok := ring.Lookup(o.keyID)
		if !ok {
			return nil, fmt.Errorf("--key-id %q is not in %s (it has %s)", o.keyID, source, strings.Join(ring.IDs(), ", "))
		}
		if o.customer != "" && k.Customer != o.customer {
			return nil, fmt.Errorf("--key-id %q belongs to customer %q, not --customer %q", o.keyID, k.Customer, o.customer)
		}
		key = k
	case o.customer != "":
		k, err := ring.SigningKey(o.customer)
		if err != nil {
			return nil, fmt.Errorf("--customer: %w in %s", err, source)
		}
		key = k
	default:
		key, _ = ring.Lookup(ring.IDs()[0])
	}
	testID, err := events.NewTestID(rnd)
	if err != nil {
		return nil, err
	}
	p := probemail.Probe{KeyID: key.ID, TestID: testID, CheckID: o.check, Site: o.site, Attempt: o.attempt,
		StartedAt: started.UTC().Truncate(time.Millisecond), ReturnTo: o.returnTo}
	msg, err := probemail.Build(p, o.to, key, probemail.BuildOptions{})
	if err != nil {
		return nil, fmt.Errorf("%w (check --to, --return and --attempt)", err)
	}
	return msg, nil
}

// stripComments drops blank lines and lines starting with '#' from a key
// file, as scout-reflector does.
func stripComments(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
