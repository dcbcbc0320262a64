#!/usr/bin/env bash
# scripts/promtool.sh — prints the path of a promtool (Prometheus's rule
# checker) for deploy/promtool_test.go. One on PATH wins; otherwise the
# binary is taken out of Debian's prometheus package (apt-get download +
# dpkg-deb -x into $SCOUT_PROMTOOL_DIR, default /tmp/scout-promtool), so no
# Prometheus server is installed or started. Needs apt lists: as root it
# runs apt-get update when the download fails.
set -euo pipefail
if command -v promtool >/dev/null; then command -v promtool; exit 0; fi
dir=${SCOUT_PROMTOOL_DIR:-/tmp/scout-promtool}
bin=$dir/root/usr/bin/promtool
if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  cd "$dir"
  if ! apt-get download -qq prometheus >&2; then
    [ "$(id -u)" = 0 ] || { echo "scripts/promtool.sh: apt-get download prometheus failed; install promtool (apt-get install prometheus) or run as root" >&2; exit 1; }
    flock /tmp/scout-apt.lock apt-get update -qq >&2
    apt-get download -qq prometheus >&2
  fi
  rm -rf root && dpkg-deb -x prometheus_*.deb root && rm -f prometheus_*.deb
fi
"$bin" --version >/dev/null || { echo "scripts/promtool.sh: $bin does not run" >&2; exit 1; }
echo "$bin"
