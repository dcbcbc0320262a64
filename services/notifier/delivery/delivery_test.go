package delivery

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
)

func TestTemporaryStatus(t *testing.T) {
	for status, want := range map[int]bool{
		400: false, 401: false, 403: false, 404: false, 408: true, 409: false, 422: false, 425: true, 429: true,
		500: true, 502: true, 503: true, 504: true,
	} {
		if got := TemporaryStatus(status); got != want {
			t.Errorf("TemporaryStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":     0,
		"30":   30 * time.Second,
		"-1":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := ParseRetryAfter(v, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestClassification(t *testing.T) {
	refused := Errorf("twilio", 400, "invalid number")
	busy := Errorf("twilio", 429, "slow down")
	busy.RetryAfter = 7 * time.Second
	noAnswer := Errorf("webhook", 0, "connection refused")
	wrapped := fmt.Errorf("send: %w", busy)
	cases := []struct {
		name       string
		err        error
		class      fault.Class
		answered   bool
		retryAfter time.Duration
	}{
		{"400", refused, fault.ClassPermanent, true, 0},
		{"429 wrapped", wrapped, fault.ClassTemporary, true, 7 * time.Second},
		{"no answer", noAnswer, fault.ClassTemporary, false, 0},
		// Not a provider's *Error: unmarked, so the notifier retries it
		// (it is not MarkedPermanent) within its retry budget.
		{"foreign error", errors.New("boom"), fault.ClassUnmarked, false, 0},
		{"nil", nil, fault.ClassUnmarked, false, 0},
	}
	for _, tc := range cases {
		if fault.Of(tc.err) != tc.class || Answered(tc.err) != tc.answered || RetryAfterOf(tc.err) != tc.retryAfter {
			t.Errorf("%s: class=%v answered=%v retry-after=%v", tc.name, fault.Of(tc.err), Answered(tc.err), RetryAfterOf(tc.err))
		}
	}
	if got := busy.Error(); got != "twilio: temporary (HTTP 429): slow down" {
		t.Errorf("Error() = %q", got)
	}
}
