package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, func(func(string) string) *cobra.Command {
		return newKeygenCmd(time.Now, rand.Reader)
	})
}

// keygenSecretLen is the length of a new probe key's secret in bytes: the
// HMAC-SHA256 output length, as RFC 2104 section 3 recommends.
const keygenSecretLen = 32

// newKeygenCmd is `scout keygen CUSTOMER [--id KEYID]`: it prints one new
// probe key line, customer:keyid:base64-secret (the SCOUT_PROBE_KEYS and
// key-file format of probemail.ParseKeys), on stdout and a one-line hint on
// stderr, so that `scout keygen acme >> keys` writes only the key. now
// dates the default key id; rnd supplies the secret (crypto/rand.Reader).
func newKeygenCmd(now func() time.Time, rnd io.Reader) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "keygen CUSTOMER",
		Short: "Print a new probe signing key line for SCOUT_PROBE_KEYS and the reflector's key file",
		Long: `keygen prints a new probe key for CUSTOMER as one line, customer:keyid:secret
(32 random bytes, base64): the format of the monitor's SCOUT_PROBE_KEYS and of
scout-reflector's key file. The key id defaults to <customer>-<yyyymmdd> (UTC);
give --id to choose another, e.g. for a second key on the same day.

The line goes in two places: the monitor's Secret behind SCOUT_PROBE_KEYS
(senders and receivers; the first key listed for a customer signs) and the
customer's reflector key file (mode 0600). The hint is written on stderr, so
that "scout keygen acme >> keys" writes only the key.`,
		Example: `  scout keygen acme
  scout keygen acme --id acme-2027 >> /home/webscout/.scout-reflector/keys`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			customer := args[0]
			if !events.ValidToken(customer) {
				return exitError{code: 2, err: fmt.Errorf("customer %q is not [a-z0-9_-]{1,63} (the check file's customer field)", customer)}
			}
			if id == "" {
				id = customer + "-" + now().UTC().Format("20060102")
			}
			secret := make([]byte, keygenSecretLen)
			if _, err := io.ReadFull(rnd, secret); err != nil {
				return fmt.Errorf("random secret: %w", err)
			}
			key := probemail.Key{ID: id, Customer: customer, Secret: secret}
			if _, err := probemail.NewKeyring(key); err != nil {
				return exitError{code: 2, err: fmt.Errorf("--id: %w", err)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s:%s:%s\n", customer, id, base64.StdEncoding.EncodeToString(secret))
			fmt.Fprintln(cmd.ErrOrStderr(), "# this line goes in the monitor's SCOUT_PROBE_KEYS Secret and in the reflector's key file (mode 0600);"+
				" when rotating, list it below the current key until every reflector has it (docs/reflector.md, Key rotation)")
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "key id, 1 to 64 characters of A-Z a-z 0-9 . _ - (default <customer>-<yyyymmdd>, UTC)")
	return cmd
}
