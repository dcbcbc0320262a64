#!/usr/bin/env bash
# ClickHouse for development and CI, from Debian's packages, without systemd.
#
#   scripts/clickhouse.sh install                    install clickhouse-server + clickhouse-client if missing
#   scripts/clickhouse.sh start [TCP] [HTTP] [DIR]   start a server in the background on 127.0.0.1
#                                                    (default ports 9000 and 8123, DIR default
#                                                    /tmp/scout-clickhouse-TCP), wait for /ping,
#                                                    print the DSN on stdout
#   scripts/clickhouse.sh stop [DIR|TCP]             stop the server started with that DIR (or TCP port)
#   scripts/clickhouse.sh dsn [TCP]                  print the DSN
#
# The server listens on 127.0.0.1 only, keeps its configuration, data and logs in DIR, and runs
# with the server time zone UTC. `start` installs the packages when they are missing. apt-get runs
# under flock /tmp/scout-apt.lock (the machine is shared). Debian's package is ClickHouse 18.16:
# see docs/analytics.md for what that implies.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
LOCK=/tmp/scout-apt.lock

die() { echo "clickhouse.sh: $*" >&2; exit 1; }

install() {
  if command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null; then
    return 0
  fi
  echo "clickhouse.sh: installing clickhouse-server and clickhouse-client (Debian)" >&2
  flock "$LOCK" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive flock "$LOCK" apt-get install -y -qq clickhouse-server clickhouse-client >&2
  command -v clickhouse-server >/dev/null || die "clickhouse-server still missing after apt-get install"
}

dir_for() { # DIR or TCP port -> DIR
  local arg=${1:-9000}
  if [[ $arg =~ ^[0-9]+$ ]]; then echo "/tmp/scout-clickhouse-$arg"; else echo "$arg"; fi
}

write_config() { # DIR TCP HTTP
  local dir=$1 tcp=$2 http=$3
  mkdir -p "$dir"
  cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$dir/server.log</log>
    <errorlog>$dir/server.err.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$tcp</tcp_port>
  <http_port>$http</http_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>64</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
EOF
  cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>2000000000</max_memory_usage>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default></default>
  </quotas>
</yandex>
EOF
}

dsn() { echo "clickhouse://127.0.0.1:${1:-9000}/scout"; }

start() {
  local tcp=${1:-9000} http=${2:-8123}
  local dir=${3:-$(dir_for "$tcp")}
  install
  if [[ -f $dir/server.pid ]] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
    echo "clickhouse.sh: already running (pid $(cat "$dir/server.pid"), $dir)" >&2
    dsn "$tcp"
    return 0
  fi
  write_config "$dir" "$tcp" "$http"
  # setsid: the server outlives this script and CI's step; stop it with `stop`.
  setsid clickhouse-server --config-file="$dir/config.xml" >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/server.pid"
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$http/ping" >/dev/null 2>&1; then
      echo "clickhouse.sh: clickhouse-server $(clickhouse-client --port "$tcp" -q 'SELECT version()' 2>/dev/null) on 127.0.0.1:$tcp (http $http), data in $dir" >&2
      dsn "$tcp"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
      tail -20 "$dir/stdout.log" "$dir/server.err.log" >&2 2>/dev/null || true
      die "clickhouse-server exited at start"
    fi
    sleep 0.1
  done
  tail -20 "$dir/server.err.log" >&2 2>/dev/null || true
  die "clickhouse-server does not answer http://127.0.0.1:$http/ping after 30 s"
}

stop() {
  local dir
  dir=$(dir_for "${1:-9000}")
  [[ -f $dir/server.pid ]] || { echo "clickhouse.sh: nothing started in $dir" >&2; return 0; }
  local pid
  pid=$(cat "$dir/server.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  fi
  rm -f "$dir/server.pid"
  echo "clickhouse.sh: stopped ($dir)" >&2
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  dsn) shift; dsn "$@" ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
