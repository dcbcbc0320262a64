package platform_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// writeFile writes data into dir/name and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func userSeed(t *testing.T) (nkeys.KeyPair, []byte, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	return kp, seed, pub
}

// TestNATSAuthFileErrors: each unusable file of NATSAuth is refused at
// once, by Options, with an error naming the variable and the file and
// never the file's content; a usable one is accepted.
func TestNATSAuthFileErrors(t *testing.T) {
	dir := t.TempDir()
	_, seed, pub := userSeed(t)
	secretish := "SUAKNOTAREALSEEDBUTSECRETLOOKING0123456789"
	good := writeFile(t, dir, "good.nk", append(append([]byte{}, seed...), '\n')) // as `nk -gen user` writes it
	missing := filepath.Join(dir, "missing.nk")
	garbage := writeFile(t, dir, "garbage.nk", []byte(secretish+"\n"))
	public := writeFile(t, dir, "public.nk", []byte(pub+"\n"))
	notPEM := writeFile(t, dir, "ca.crt", []byte("not a certificate"))
	cases := []struct {
		name string
		auth platform.NATSAuth
		want []string // every one in the error
	}{
		{"missing seed file", platform.NATSAuth{NKeyFile: missing}, []string{"SCOUT_NATS_NKEY_FILE=" + missing, "no such file"}},
		{"unreadable seed file (a directory)", platform.NATSAuth{NKeyFile: dir}, []string{"SCOUT_NATS_NKEY_FILE=" + dir}},
		{"no seed in the file", platform.NATSAuth{NKeyFile: garbage}, []string{"SCOUT_NATS_NKEY_FILE=" + garbage}},
		{"a public key instead of the seed", platform.NATSAuth{NKeyFile: public}, []string{"SCOUT_NATS_NKEY_FILE=" + public}},
		{"missing creds file", platform.NATSAuth{CredsFile: missing}, []string{"SCOUT_NATS_CREDS_FILE=" + missing, "no such file"}},
		{"no JWT in the creds file", platform.NATSAuth{CredsFile: good}, []string{"SCOUT_NATS_CREDS_FILE=" + good, "no user JWT"}},
		{"both creds and seed", platform.NATSAuth{CredsFile: good, NKeyFile: good}, []string{"SCOUT_NATS_CREDS_FILE", "SCOUT_NATS_NKEY_FILE", "not both"}},
		{"missing CA file", platform.NATSAuth{NKeyFile: good, CAFile: missing}, []string{"SCOUT_NATS_TLS_CA=" + missing}},
		{"CA file without a certificate", platform.NATSAuth{NKeyFile: good, CAFile: notPEM}, []string{"SCOUT_NATS_TLS_CA=" + notPEM}},
		{"certificate without key", platform.NATSAuth{CertFile: notPEM}, []string{"SCOUT_NATS_TLS_CERT", "SCOUT_NATS_TLS_KEY"}},
		{"unreadable client certificate", platform.NATSAuth{CertFile: missing, KeyFile: missing}, []string{"SCOUT_NATS_TLS_CERT=" + missing}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.auth.Options()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, leak := range []string{secretish, string(seed)} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q shows the file's content", err)
				}
			}
		})
	}
	if opts, err := (platform.NATSAuth{NKeyFile: good}).Options(); err != nil || len(opts) != 1 {
		t.Errorf("a seed file as nk writes it: %d options, %v", len(opts), err)
	}
}

// TestConnectWithCredsFile: a service with SCOUT_NATS_CREDS_FILE connects
// to a nats-server in operator/JWT mode (an operator, an account, a user
// JWT signed by the account, as nsc makes them) and is refused without it.
func TestConnectWithCredsFile(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	opPub, _ := operator.PublicKey()
	opClaims := jwt.NewOperatorClaims(opPub)
	opJWT, err := opClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	opDecoded, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	account, _ := nkeys.CreateAccount()
	accPub, _ := account.PublicKey()
	accClaims := jwt.NewAccountClaims(accPub)
	accClaims.Name = "SCOUT"
	accJWT, err := accClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	_, seed, userPub := userSeed(t)
	uc := jwt.NewUserClaims(userPub)
	uc.Name = "receiver-eu-west"
	uc.Pub.Allow.Add("mail.returned.>")
	userJWT, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	credsFile := writeFile(t, dir, "receiver-eu-west.creds", creds)

	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TrustedOperators: []*jwt.OperatorClaims{opDecoded}, AccountResolver: resolver})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)

	ctx := natstest.Context(t)
	sink := &testkit.LogBuffer{}
	log := slog.New(slog.NewTextHandler(sink, nil))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, _, err := platform.Connect(cctx, s.ClientURL(), "scout-receiver-eu-west", platform.NATSAuth{CredsFile: credsFile}, log)
	if err != nil {
		t.Fatalf("connect with SCOUT_NATS_CREDS_FILE: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish("mail.returned.eu-west.c", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil || nc.LastError() != nil {
		t.Errorf("publish as the creds file's user: %v, %v", err, nc.LastError())
	}

	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if nc, _, err := platform.Connect(short, s.ClientURL(), "scout-anonymous", platform.NATSAuth{}, log); err == nil {
		nc.Close()
		t.Error("connected without credentials to a server in operator mode")
	}
}
