#!/bin/sh
# deploy/docker/build.sh SERVICE OUTDIR
#
# Builds the static binary of one Email Scout service, or of the scout CLI,
# into OUTDIR/SERVICE, exactly as deploy/docker/Dockerfile does. Run it from
# the repository root (or a build context that .dockerignore produced).
#
# Each binary is built from its own module with GOWORK=off: the versions its
# go.mod pins, without the workspace's other modules (test/e2e, and deploy
# with its Kubernetes dependencies, which the build context leaves out).
# CGO_ENABLED=0 makes it static; -trimpath keeps build paths out of it.
# VERSION and REVISION (the Dockerfile's build arguments) are linked into
# the binary (pkg/buildinfo): --version and the metric scout_build_info
# show them.
set -eu

services="scheduler sender receiver evaluator notifier recorder web scout"

usage() {
  echo "usage: build.sh SERVICE OUTDIR (SERVICE: $services)" >&2
  exit 2
}

[ $# -eq 2 ] || usage
service=$1
out=$2
case "$service" in
  scheduler|sender|receiver|evaluator|notifier|recorder|web) module=services/$service pkg=./cmd/$service ;;
  scout) module=cmd pkg=./scout ;;
  *) echo "build.sh: unknown SERVICE '$service'" >&2; usage ;;
esac

mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$module"
bi=github.com/emailscout/emailscout/pkg/buildinfo
GOWORK=off CGO_ENABLED=0 go build -trimpath -buildvcs=false \
  -ldflags "-s -w -X $bi.version=${VERSION:-dev} -X $bi.revision=${REVISION:-unknown}" -o "$out/$service" "$pkg"
