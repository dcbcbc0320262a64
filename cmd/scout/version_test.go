package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: scout --version prints the build (pkg/buildinfo).
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "scout ") || !strings.Contains(out.String(), "(revision ") ||
		!strings.Contains(out.String(), runtime.Version()+")") {
		t.Errorf("scout --version printed %q", out.String())
	}
}
