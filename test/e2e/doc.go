// Package e2e holds Email Scout's end-to-end tests against real mail
// servers: Debian's Postfix and Dovecot, on loopback, built and started by
// scripts/mailstack.sh. The tests carry the build tag e2e and need root:
//
//	go test -tags e2e -v -count=1 ./test/e2e/
//
// TestMain runs `scripts/mailstack.sh start` itself (it installs the
// packages when missing and is idempotent) and `scripts/mailstack.sh stop`
// at the end unless SCOUT_E2E_KEEP=1, so CI needs nothing else. -v shows
// the measured round-trip times.
package e2e
