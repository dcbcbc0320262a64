package recorder_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/recorder"
)

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    recorder.Config
		wantErr []string // every substring must appear
	}{{
		name: "defaults",
		env:  map[string]string{"SCOUT_CLICKHOUSE_DSN": "clickhouse://127.0.0.1:9000/scout"},
		want: recorder.Config{DSN: "clickhouse://127.0.0.1:9000/scout", BatchSize: 1000, BatchWait: 2 * time.Second, TTLDays: 400, MaxBackoff: 30 * time.Second},
	}, {
		name: "all set",
		env: map[string]string{"SCOUT_CLICKHOUSE_DSN": "clickhouse://u:p@127.0.0.1:9000/scout", "SCOUT_RECORDER_BATCH_SIZE": "50",
			"SCOUT_RECORDER_BATCH_WAIT": "500ms", "SCOUT_CLICKHOUSE_TTL_DAYS": "0", "SCOUT_RECORDER_MAX_BACKOFF": "5s"},
		want: recorder.Config{DSN: "clickhouse://u:p@127.0.0.1:9000/scout", BatchSize: 50, BatchWait: 500 * time.Millisecond, TTLDays: 0, MaxBackoff: 5 * time.Second},
	}, {
		name:    "missing DSN",
		env:     map[string]string{},
		wantErr: []string{"SCOUT_CLICKHOUSE_DSN"},
	}, {
		name:    "unparsable number",
		env:     map[string]string{"SCOUT_CLICKHOUSE_DSN": "clickhouse://127.0.0.1:9000/scout", "SCOUT_RECORDER_BATCH_SIZE": "many"},
		wantErr: []string{`SCOUT_RECORDER_BATCH_SIZE="many"`},
	}, {
		name: "out of range",
		env: map[string]string{"SCOUT_CLICKHOUSE_DSN": "clickhouse://127.0.0.1:9000/scout", "SCOUT_RECORDER_BATCH_SIZE": "20000",
			"SCOUT_RECORDER_BATCH_WAIT": "5m", "SCOUT_CLICKHOUSE_TTL_DAYS": "-1", "SCOUT_RECORDER_MAX_BACKOFF": "-1s"},
		wantErr: []string{"SCOUT_RECORDER_BATCH_SIZE=20000: must be 1..10000", "SCOUT_RECORDER_BATCH_WAIT=5m0s: must be under half",
			"SCOUT_CLICKHOUSE_TTL_DAYS=-1", "SCOUT_RECORDER_MAX_BACKOFF=-1s"},
	}, {
		name:    "http protocol",
		env:     map[string]string{"SCOUT_CLICKHOUSE_DSN": "http://u:secret@127.0.0.1:8123/scout"},
		wantErr: []string{"SCOUT_CLICKHOUSE_DSN", `scheme "http" is not supported: use clickhouse://`},
	}, {
		name:    "no scheme",
		env:     map[string]string{"SCOUT_CLICKHOUSE_DSN": "127.0.0.1:9000"},
		wantErr: []string{"SCOUT_CLICKHOUSE_DSN"},
	}, {
		name:    "bad option",
		env:     map[string]string{"SCOUT_CLICKHOUSE_DSN": "clickhouse://127.0.0.1:9000/scout?dial_timeout=soon&password=secret"},
		wantErr: []string{"SCOUT_CLICKHOUSE_DSN", "dial timeout"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := platform.LoadEnv[recorder.Config](func(k string) string { return tt.env[k] })
			if err == nil {
				err = cfg.Validate()
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if cfg != tt.want {
					t.Errorf("config %+v, want %+v", cfg, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestNewFillsDefaults(t *testing.T) {
	if _, err := recorder.New(recorder.Config{DSN: "clickhouse://127.0.0.1:9000/scout"}, recorder.Deps{}); err == nil || !strings.Contains(err.Error(), "Deps.JS") {
		t.Errorf("New without JetStream: %v", err)
	}
	if _, err := recorder.New(recorder.Config{}, recorder.Deps{}); err == nil || !strings.Contains(err.Error(), "SCOUT_CLICKHOUSE_DSN is required") {
		t.Errorf("New without DSN: %v", err)
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"clickhouse://scout:s3cret@127.0.0.1:9000/scout":            "clickhouse://scout:xxxxx@127.0.0.1:9000/scout",
		"clickhouse://127.0.0.1:9000/scout?password=s3cret&debug=0": "clickhouse://127.0.0.1:9000/scout?debug=0&password=xxxxx",
		"clickhouse://127.0.0.1:9000/scout":                         "clickhouse://127.0.0.1:9000/scout",
	} {
		if got := recorder.RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}
