#!/usr/bin/env bash
# scripts/test.sh — everything `make test` and CI run, in order:
#   1. go vet over every module (also with the integration and e2e tags)
#   2. every module's unit tests with the race detector   (needs only Go)
#   3. the alerts: `promtool check rules` and `promtool test rules` on the
#      prod PrometheusRule (deploy/prometheus/alerts_test.yaml; promtool is
#      taken from Debian's prometheus package by scripts/promtool.sh)
#   4. bounded fuzzing: every native Go fuzz target for 10 s
#      (scripts/fuzz.sh; SCOUT_FUZZTIME changes the time)
#   5. the integration suite: the recorder, the notifier -> recorder path,
#      the web service's plots and `scout provision` against a real
#      clickhouse-server, and provisioning a three-node JetStream cluster
#      (installs Debian's clickhouse-server when missing)
#   6. the short chaos soak (docs/soak.md): make build's binaries as separate
#      processes, a nats-server process and a ClickHouse server on ports of
#      its own, killed, stopped and restarted on a seeded plan for 3 minutes;
#      fails when a result is lost, a row duplicated or an incident or SMS is
#      wrong (SCOUT_SOAK_SEED, default 1; SCOUT_SOAK_FLAGS adds flags)
#   7. the Postfix + Dovecot suites: scout-reflector and the whole loop on
#      a real mail stack, and the SMTP/IMAP/POP3 probers against real servers
#      (installs Debian's postfix, dovecot-imapd, dovecot-pop3d when missing)
#   8. the browser suite: the web service's pages in a headless Chromium
#      (chromedp; installs Debian's chromium when missing); screenshots go to
#      $SCOUT_ARTIFACTS (default: a new temporary directory, printed)
# Steps 5 to 8 install packages and configure local daemons on loopback:
# run them as root on a Debian machine (as CI does). SCOUT_TEST_STEPS limits
# the steps, e.g. SCOUT_TEST_STEPS="vet unit" for a machine without root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

steps=${SCOUT_TEST_STEPS:-"vet unit alerts fuzz clickhouse soak e2e browser"}
want() { [[ " $steps " == *" $1 "* ]]; }
step() { printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: the $1 suite installs Debian packages and configures local daemons: run it as root," >&2
    echo "or run only the other steps: SCOUT_TEST_STEPS=\"vet unit\" make test (or: make unit)" >&2
    exit 1
  fi
}

start=$(date +%s)
if want vet; then
  step "go vet (all modules, with the integration and e2e files)"
  go vet -tags 'integration e2e promtool browser' work
  unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
  if [ -n "$unformatted" ]; then
    echo "gofmt would change:" >&2; echo "$unformatted" >&2; exit 1
  fi
fi
if want unit; then
  step "unit tests, race detector, every module"
  go test -race -count=1 work
fi
if want alerts; then
  step "alerts (promtool check rules, promtool test rules)"
  promtool=$(./scripts/promtool.sh)
  PROMTOOL=$promtool go test -count=1 -tags promtool -run AlertsWithPromtool ./deploy/
fi
if want fuzz; then
  step "bounded fuzzing (every fuzz target, ${SCOUT_FUZZTIME:-10s} each)"
  ./scripts/fuzz.sh
fi
if want clickhouse; then
  need_root ClickHouse
  step "integration suite (recorder and provisioning against Debian's clickhouse-server; a three-node NATS cluster)"
  ./scripts/clickhouse.sh install
  go test -race -count=1 -tags integration -timeout 10m ./services/recorder/...
  go test -race -count=1 -tags integration -run ClickHouse ./test/system/
  go test -race -count=1 -tags integration -run ProvisionClickHouse ./cmd/scout/
  go test -count=1 -tags integration -run ProvisionThreeNodeCluster ./cmd/scout/
fi
if want soak; then
  need_root "soak"
  step "chaos soak, short form (real binaries, nats-server, ClickHouse; seed ${SCOUT_SOAK_SEED:-1})"
  ./scripts/clickhouse.sh install
  make build nats-server >/dev/null
  # shellcheck disable=SC2086 # SCOUT_SOAK_FLAGS is a list of flags
  ./bin/scout soak --seed "${SCOUT_SOAK_SEED:-1}" ${SCOUT_SOAK_FLAGS:-}
fi
if want e2e; then
  need_root "Postfix + Dovecot"
  step "Postfix + Dovecot suites (scout-reflector, the whole loop, the service probers)"
  go test -count=1 -tags e2e -timeout 10m -v ./test/e2e/
  go test -race -count=1 -tags e2e -timeout 10m -run E2E ./pkg/probe/
  step "real-stack benchmark, smoke (scout bench --stack runs on every path; its figures are a measurement, not a test)"
  go run ./cmd/scout bench --stack --paths pipe,imap-receiver,imap-reflector --step 4s --start-rate 2 --growth 1.5 --max-rate 3
  bash ./scripts/mailstack.sh stop
fi
if want browser; then
  if ! command -v chromium >/dev/null; then
    need_root "browser"
    step "installing Debian's chromium"
    flock /tmp/scout-apt.lock sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null'
  fi
  step "browser suite (the web pages in headless Chromium)"
  go test -count=1 -tags browser -timeout 5m -run Browser -v ./services/web/
fi
printf '\nall steps passed (%s) in %ss\n' "$steps" "$(( $(date +%s) - start ))"
