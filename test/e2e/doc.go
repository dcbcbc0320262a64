// Package e2e holds Email Scout's end-to-end tests against real mail
// servers: Debian's Postfix and Dovecot, on loopback, built and started by
// scripts/mailstack.sh. The tests carry the build tag e2e and need root:
//
//	go test -tags e2e -v -count=1 -timeout 10m ./test/e2e/
//
// reflector_test.go drives scout-reflector through Postfix with a plain
// go-smtp server as the monitor's side. loop_test.go runs the real sender,
// receiver and evaluator in this process on an embedded JetStream (wired
// as `scout dev` wires them) against the same Postfix: the SMTP return
// path, the IMAP return path through Dovecot, the receiver's port down and
// up again (a late return), and a forged probe. oauth_test.go serves an
// OAuth token endpoint and Dovecot's introspection endpoint on loopback and
// logs in to Dovecot (IMAP) and Postfix (SMTP AUTH) with XOAUTH2 and
// OAUTHBEARER through pkg/mailauth, including a token that expires
// mid-run (renewed before expiry, and dropped by the server after it)
// and a revoked client secret. The suite takes about 90 seconds
// once the packages are installed.
//
// TestMain runs `scripts/mailstack.sh start` itself (it installs the
// packages when missing and is idempotent) and `scripts/mailstack.sh stop`
// at the end unless SCOUT_E2E_KEEP=1, so CI needs nothing else. -v shows
// the measured round-trip times.
package e2e
