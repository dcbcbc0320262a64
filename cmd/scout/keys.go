package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/probemail"
)

// devKeys returns the probe keys of `scout dev` in SCOUT_PROBE_KEYS format:
// one random 32-byte key per customer of the check file, kept in path
// (mode 0600) so that probes in flight across restarts still verify. A
// customer new to the file gets a key added.
func devKeys(path string, f *checks.File) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	spec := strings.TrimSpace(string(data))
	have := map[string]bool{}
	if spec != "" {
		if _, err := probemail.ParseKeys(spec); err != nil {
			return "", fmt.Errorf("%s: %w (delete it or run with --fresh)", path, err)
		}
		for _, line := range strings.Split(spec, "\n") {
			if c, _, ok := strings.Cut(line, ":"); ok {
				have[c] = true
			}
		}
	}
	changed := false
	for _, c := range f.Checks {
		if have[c.Customer] {
			continue
		}
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return "", err
		}
		if spec != "" {
			spec += "\n"
		}
		spec += fmt.Sprintf("%s:dev-%s:%s", c.Customer, c.Customer, base64.RawStdEncoding.EncodeToString(secret))
		have[c.Customer] = true
		changed = true
	}
	if changed {
		if err := os.WriteFile(path, []byte(spec+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	return spec, nil
}
