package platform_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

// TestBuildInfoMetric: scout_build_info is 1 and names the version, the
// revision and the Go version that built the binary.
func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(platform.BuildInfoCollector())
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "scout_build_info" {
		t.Fatalf("gathered %v, %v", mfs, err)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if m.GetGauge().GetValue() != 1 || labels["goversion"] != runtime.Version() || labels["version"] == "" || labels["revision"] == "" {
		t.Errorf("scout_build_info = %v %v", labels, m.GetGauge().GetValue())
	}
	if v := testkit.MustMetric(t, reg, "scout_build_info", map[string]string{"goversion": runtime.Version()}); v != 1 {
		t.Errorf("scout_build_info = %v", v)
	}
}

// TestMetricsOpenMetrics: /metrics answers in the OpenMetrics format to a
// scraper that asks for it, and in Prometheus's text format otherwise.
func TestMetricsOpenMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(platform.BuildInfoCollector())
	srv := httptest.NewServer(platform.HTTPHandler(platform.NewHealth(), reg))
	defer srv.Close()
	for accept, want := range map[string]string{
		"application/openmetrics-text;version=1.0.0": "application/openmetrics-text",
		"": "text/plain",
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, want) {
			t.Errorf("Accept %q: Content-Type %q, want %s", accept, ct, want)
		}
		if !strings.Contains(string(body), "scout_build_info{") {
			t.Errorf("Accept %q: no scout_build_info in\n%s", accept, body)
		}
		if want == "application/openmetrics-text" && !strings.HasSuffix(string(body), "# EOF\n") {
			t.Errorf("OpenMetrics body does not end with # EOF:\n%s", body)
		}
	}
}

// TestMainVersion: every service's main is platform.Main, and
// "<service> --version" prints the build and exits 0 without running the
// service (which here would fail). It runs this test binary as the command.
func TestMainVersion(t *testing.T) {
	if os.Getenv("SCOUT_TEST_MAIN") == "1" {
		os.Args = []string{"scheduler", "--version"}
		platform.Main("scheduler", func(context.Context, []string, func(string) string, io.Writer) error {
			return errors.New("the service ran")
		})
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainVersion$")
	cmd.Env = append(os.Environ(), "SCOUT_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scheduler --version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "scheduler ") || !strings.Contains(string(out), "(revision ") ||
		!strings.Contains(string(out), runtime.Version()+")") || strings.Contains(string(out), "the service ran") {
		t.Errorf("scheduler --version printed %q", out)
	}
}
