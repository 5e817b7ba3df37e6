#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the evaluator's tests (tests/evaluator/conftest.py).
#
#   hack/postgres.sh start      -> initialises a cluster in a new temporary directory, starts a
#                                  server on 127.0.0.1 on a free port, prints one line:
#                                  "postgresql://postgres@127.0.0.1:PORT/postgres DIR"
#   hack/postgres.sh stop DIR   -> stops that server and removes DIR
#
# Debian's `postgresql` is installed with apt-get when no initdb is found (the machine is root;
# a non-root developer installs it once the same way). PostgreSQL refuses to run as root, so as
# root the cluster runs as the unprivileged user tether-pg (created if absent). Trust auth, the
# socket in DIR, listening on 127.0.0.1 only: nothing outside the machine can reach it.
set -euo pipefail

die() { echo "hack/postgres.sh: $*" >&2; exit 1; }

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  done
  return 1
}

install_postgres() {
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed: run 'apt-get install postgresql' as root"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
      || die "apt-get install postgresql failed"
  }
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u tether-pg -- "$@"; else "$@"; fi
}

start() {
  local dir bin port
  bin="$(bindir)" || { install_postgres; bin="$(bindir)" || die "no initdb after install"; }
  if [ "$(id -u)" = 0 ] && ! id tether-pg >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin tether-pg
  fi
  # Its own directory, owned by whoever runs the server (a root-only parent would lock it out).
  dir="$(mktemp -d "${TMPDIR:-/tmp}/tether-pg.XXXXXX")"
  chmod 0755 "$dir"
  if [ "$(id -u)" = 0 ]; then chown tether-pg "$dir"; fi
  as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 \
    || die "initdb failed: $(tail -5 "$dir/initdb.log")"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on" >/dev/null \
    || die "the server did not start: $(tail -5 "$dir/server.log")"
  echo "postgresql://postgres@127.0.0.1:$port/postgres $dir"
}

stop() {
  local dir="$1" bin
  bin="$(bindir)" || die "no PostgreSQL installed"
  case "$dir" in "${TMPDIR:-/tmp}"/tether-pg.*) ;; *) die "stop: $dir is not a tether-pg dir";; esac
  as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:?usage: hack/postgres.sh stop DIR}" ;;
  *) die "usage: hack/postgres.sh start | hack/postgres.sh stop DIR" ;;
esac
