// Package flaghint names the flag a mistyped one was probably meant to be.
package flaghint

import (
	"errors"
	"fmt"

	"github.com/agnivade/levenshtein"
	"github.com/spf13/pflag"
)

// maxDistance is the largest edit distance (Levenshtein: insertions,
// deletions, substitutions) between a mistyped long flag and a flag of the
// command that is offered as a suggestion.
const maxDistance = 2

// Suggest returns err, pflag's error for an unknown long flag
// (*pflag.NotExistError, "unknown flag: --name"), with the nearest flag of
// fs appended as "(did you mean --other?)" when one is at most maxDistance
// edits away (ties: the first in lexical order). Any other error, and an
// unknown shorthand, is returned unchanged.
func Suggest(fs *pflag.FlagSet, err error) error {
	var ne *pflag.NotExistError
	if !errors.As(err, &ne) || ne.GetSpecifiedShortnames() != "" {
		return err
	}
	typed := ne.GetSpecifiedName()
	best, bestDist := "", maxDistance+1
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if d := levenshtein.ComputeDistance(typed, f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	if best == "" {
		return err
	}
	return fmt.Errorf("%w (did you mean --%s?)", err, best)
}
