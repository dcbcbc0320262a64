package buildinfo

import (
	"runtime"
	"testing"
)

func TestReadPrefersLinkTimeValues(t *testing.T) {
	defer func(v, r string) { version, revision = v, r }(version, revision)
	version, revision = "0.1.0", "0123456789abcdef0123456789abcdef01234567"
	in := Read()
	if in.Version != "0.1.0" || in.Revision != revision || in.GoVersion != runtime.Version() {
		t.Fatalf("Read() = %+v", in)
	}
	if got, want := in.String(), "0.1.0 (revision 0123456789ab, "+runtime.Version()+")"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestReadWithoutLinkTimeValues(t *testing.T) {
	defer func(v, r string) { version, revision = v, r }(version, revision)
	version, revision = "", ""
	in := Read()
	// go test records no VCS revision; the main module's version is what
	// the toolchain wrote ("(devel)" for a test binary) or "unknown".
	if in.Version == "" || in.Revision == "" || in.GoVersion != runtime.Version() {
		t.Fatalf("Read() = %+v: every field must be filled", in)
	}
}

func TestStringShortensDirtyRevision(t *testing.T) {
	in := Info{Version: "v0.0.0-x", Revision: "0123456789abcdef0123-dirty", GoVersion: "go1.26.8"}
	if got, want := in.String(), "v0.0.0-x (revision 0123456789ab-dirty, go1.26.8)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	in.Revision = "unknown"
	if got, want := in.String(), "v0.0.0-x (revision unknown, go1.26.8)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
