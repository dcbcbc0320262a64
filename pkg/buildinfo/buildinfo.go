// Package buildinfo says which build of Email Scout is running: the release
// version and source revision given at link time, or what the Go toolchain
// recorded in the binary (runtime/debug.ReadBuildInfo) when none was given.
// Every binary prints it for --version, and every service exports it as the
// metric scout_build_info (docs/configuration.md, "Metrics every service
// exports"). Standard library only.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time by make build and deploy/docker/build.sh:
//
//	-ldflags "-X github.com/emailscout/emailscout/pkg/buildinfo.version=0.1.0
//	          -X github.com/emailscout/emailscout/pkg/buildinfo.revision=<git commit>"
var version, revision string

// Info is one binary's build.
type Info struct {
	// Version is the release (0.1.0), else the main module's version from
	// the build info: a pseudo-version for a build in a git checkout,
	// "(devel)" or "unknown" otherwise.
	Version string
	// Revision is the source commit (vcs.revision), "unknown" when the
	// build recorded none (go build -buildvcs=false, go test, go run without
	// a checkout); a "-dirty" suffix marks uncommitted changes (vcs.modified).
	Revision string
	// GoVersion is the toolchain that built the binary (go1.26.8).
	GoVersion string
}

// Read returns this binary's build. It never fails: what is not known is
// "unknown".
func Read() Info {
	in := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		if in.Revision == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			in.Revision = rev
		}
	}
	if in.Version == "" {
		in.Version = "unknown"
	}
	if in.Revision == "" {
		in.Revision = "unknown"
	}
	return in
}

// String is the --version line after the program's name:
// "0.1.0 (revision 1a2b3c4d5e6f, go1.26.8)". A full commit id is shortened
// to 12 characters.
func (in Info) String() string {
	rev := in.Revision
	if base, dirty := strings.CutSuffix(rev, "-dirty"); len(base) > 12 {
		rev = base[:12]
		if dirty {
			rev += "-dirty"
		}
	}
	return in.Version + " (revision " + rev + ", " + in.GoVersion + ")"
}
