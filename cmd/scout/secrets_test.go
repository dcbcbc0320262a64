package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDevLeaksNoSecret runs the whole dev stack with known secrets (the
// probe keys of both customers and the demo mailbox's password, which the
// IMAP and POP3 checks log in with) and looks for them where they must
// never be: scout dev's output and log file, every metric's labels and
// help, and every message NATS stored (the stream SCOUT and every KV
// bucket: events, receipts, state). ClickHouse rows are the recorder's
// copies of those events (the recorder adds no field of its own).
func TestDevLeaksNoSecret(t *testing.T) {
	t.Parallel() // its own data directory, NATS and ports
	dir := t.TempDir()
	keyA := base64.RawStdEncoding.EncodeToString([]byte("acme-secret-key-0123456789abcdef"))
	keyG := base64.RawStdEncoding.EncodeToString([]byte("globex-secret-key-0123456789abcd"))
	if err := os.WriteFile(filepath.Join(dir, "probe-keys"), []byte("acme:dev-acme:"+keyA+"\nglobex:dev-globex:"+keyG+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	password := "demo-Passw0rd-never-logged"
	secrets := map[string]string{"acme probe key": keyA, "globex probe key": keyG, "demo password": password}

	reg := prometheus.NewRegistry()
	var out bytes.Buffer
	o := devOptions{checksFile: "../../deploy/dev/checks.yaml", dataDir: dir, duration: 12 * time.Second,
		natsPort: -1, getenv: os.Getenv, registry: reg, demoPassword: password}
	if err := runDev(context.Background(), o, &out); err != nil {
		t.Fatalf("scout dev: %v\n%s", err, out.String())
	}
	// The secrets were in use: probes signed with the keys came back, and
	// the IMAP and POP3 checks logged in with the password.
	for _, want := range []string{"acme-roundtrip", "acme-imap", "acme-pop3"} {
		if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), " ok ") {
			t.Fatalf("no ok attempt of %s: the secrets were not used\n%s", want, out.String())
		}
	}

	var places []string
	look := func(where string, data []byte) {
		places = append(places, where)
		for name, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("the %s appears in %s", name, where)
			}
		}
	}
	look("scout dev's output", out.Bytes())
	logData, err := os.ReadFile(filepath.Join(dir, "scout-dev.log"))
	if err != nil || len(logData) == 0 {
		t.Fatalf("log file: %v (%d bytes)", err, len(logData))
	}
	look("the log file", logData)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		look("metric "+mf.GetName(), []byte(mf.String()))
	}

	// Every message NATS kept, read back from the dev store.
	ns, err := startNATS(filepath.Join(dir, "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	messages := 0
	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted or expired
			}
			messages++
			var hdr strings.Builder
			for k, v := range m.Header {
				hdr.WriteString(k + ": " + strings.Join(v, ",") + "\n")
			}
			look("stream "+name, append([]byte(m.Subject+"\n"+hdr.String()), m.Data...))
		}
	}
	if messages < 50 {
		t.Fatalf("only %d stored messages read: the check looked at too little", messages)
	}
	t.Logf("%d stored NATS messages, %d metric families, %d bytes of log and %d of output: no secret", messages, len(families), len(logData), out.Len())
}
