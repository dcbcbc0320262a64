package platform

import "log/slog"

// Secret is a configuration value that must never be logged (a key list, a
// password, a token): String, GoString, LogValue and MarshalText all print
// "[redacted]" ("" when empty); Reveal returns the value. Secrets come from
// the environment, in Kubernetes from a Secret through secretKeyRef.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer with the redacted form.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer (%#v) with the redacted form.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue implements slog.LogValuer with the redacted form.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler (JSON, YAML) with the
// redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
