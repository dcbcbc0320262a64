package flaghint

import (
	"errors"
	"testing"

	"github.com/spf13/pflag"
)

// TestSuggest: a long flag one or two edits from a real one names it; a
// name farther from every flag, an unknown shorthand and other errors are
// left as they were; hidden flags are never offered.
func TestSuggest(t *testing.T) {
	parse := func(args ...string) error {
		fs := pflag.NewFlagSet("scout-reflector", pflag.ContinueOnError)
		fs.SetOutput(discard{})
		fs.Duration("fast-poll", 0, "")
		fs.String("key-file", "", "")
		fs.String("smtp", "", "")
		fs.BoolP("verbose", "v", false, "")
		fs.String("secret-debug", "", "")
		_ = fs.MarkHidden("secret-debug")
		return Suggest(fs, fs.Parse(args))
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fast-pol=50ms"}, "unknown flag: --fast-pol (did you mean --fast-poll?)"},
		{[]string{"--keyfile", "k"}, "unknown flag: --keyfile (did you mean --key-file?)"},
		{[]string{"--smpt=127.0.0.1:25"}, "unknown flag: --smpt (did you mean --smtp?)"},
		{[]string{"--imap-password=x"}, "unknown flag: --imap-password"},
		{[]string{"--secret-debu"}, "unknown flag: --secret-debu"},
		{[]string{"-x"}, `unknown shorthand flag: 'x' in -x`},
		{[]string{"--fast-poll=soon"}, `invalid argument "soon" for "--fast-poll" flag: time: invalid duration "soon"`},
	} {
		err := parse(tc.args...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: err = %v, want %q", tc.args, err, tc.want)
		}
	}
	var ne *pflag.NotExistError
	if err := parse("--fast-pol=1s"); !errors.As(err, &ne) {
		t.Errorf("the suggestion hides pflag's error: %T", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
