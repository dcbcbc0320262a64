# Email Scout — developer entry points. See README.md.
GO ?= go

.PHONY: dev test unit bench scale build vet fmt soak nats-server

## dev: run the whole system on this machine (embedded NATS, demo mail server)
dev:
	$(GO) run ./cmd/scout dev

## test: everything CI runs: vet, unit tests with -race, ClickHouse and Postfix/Dovecot suites
test:
	./scripts/test.sh

## unit: unit tests of every module, with the race detector (needs only Go)
unit:
	$(GO) vet work
	$(GO) test -race -count=1 work

## bench: SMTP raw rate vs. whole-pipeline round trips per second, and monitor-added latency
bench:
	$(GO) run ./cmd/scout bench

## scale: the real scheduler and evaluator at N checks x 3 sites with instant fake senders/receivers (docs/capacity.md)
scale:
	$(GO) run ./cmd/scout scale

## build: static binaries of every command into ./bin (GOOS=linux GOARCH=arm64 make build cross-compiles;
## VERSION=0.1.0 make build sets the version that --version and scout_build_info show; the revision is
## git's HEAD, which Go does not stamp itself in a workspace build)
VERSION ?= dev
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
build:
	mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/emailscout/emailscout/pkg/buildinfo.version=$(VERSION) -X github.com/emailscout/emailscout/pkg/buildinfo.revision=$(REVISION)" -o bin/ ./cmd/scout ./cmd/scout-reflector ./services/scheduler/cmd/scheduler \
		./services/sender/cmd/sender ./services/receiver/cmd/receiver ./services/evaluator/cmd/evaluator \
		./services/notifier/cmd/notifier ./services/recorder/cmd/recorder ./services/web/cmd/web

## soak: the chaos soak (docs/soak.md): the real binaries, nats-server and ClickHouse under faults;
## the short form by default (about 5 minutes), SOAK_FLAGS="--duration 30m --seed 7" for the long one
SOAK_FLAGS ?=
soak: build nats-server
	./bin/scout soak $(SOAK_FLAGS)

## nats-server: the NATS server of the module's own nats-server dependency, into ./bin
nats-server:
	mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/nats-server github.com/nats-io/nats-server/v2

vet:
	$(GO) vet work

fmt:
	gofmt -l -w .
