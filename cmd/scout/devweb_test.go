package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/testkit"
)

// TestDevServesWebPages: scout dev prints the URL of the status pages on
// its --http address, serves them and the JSON API there (no credentials
// on loopback) next to /metrics, /healthz and /readyz, and the overview
// turns green as round trips complete.
func TestDevServesWebPages(t *testing.T) {
	t.Parallel()
	out := &testkit.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--checks", "../../deploy/dev/checks.yaml", "--data-dir", t.TempDir(),
			"--duration", "40s", "--http", "127.0.0.1:0"}, os.Getenv, out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scout dev: %v\n%s", err, out.String())
		}
	}()
	url := regexp.MustCompile(`status pages on (http://127\.0\.0\.1:\d+)/`)
	var base string
	for deadline := time.Now().Add(60 * time.Second); base == ""; time.Sleep(50 * time.Millisecond) {
		if m := url.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no status page URL printed:\n%s", out.String())
		}
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for path, want := range map[string]string{"/metrics": "scout_build_info", "/healthz": "ok", "/": "ACME mail round trip"} {
		if code, body := get(path); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want 200 with %q", path, code, want)
		}
	}
	up := false
	for deadline := time.Now().Add(35 * time.Second); !up && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, body := get("/api/v1/overview")
		var o struct {
			Checks []struct{ ID, State string } `json:"checks"`
		}
		if json.Unmarshal([]byte(body), &o) == nil {
			for _, c := range o.Checks {
				up = up || c.ID == "acme-roundtrip" && c.State == "up"
			}
		}
	}
	if !up {
		t.Error("acme-roundtrip never turned up in /api/v1/overview")
	}
	// scout status reads the same API: the check up at both sites.
	var st bytes.Buffer
	if err := run(ctx, []string{"status", "--url", base}, os.Getenv, &st); err != nil && exitCode(err) != statusWarning {
		t.Errorf("scout status: %v\n%s", err, st.String())
	}
	row := regexp.MustCompile(`(?m)^UP +acme-roundtrip +roundtrip +\S+@\S+ +dev-[ab] +up +ok +\d+ ms +\d+s$`)
	if !row.MatchString(st.String()) || !strings.Contains(st.String(), "checks: 0 down") {
		t.Errorf("scout status:\n%s", st.String())
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz: %d", code)
	}
}
