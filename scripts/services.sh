#!/usr/bin/env bash
# Installs (once) and starts the real services the tests talk to, without Docker:
#   LocalStack (S3) on 127.0.0.1:4566, from localstack/requirements.txt in a venv;
#   aiosmtpd, a real SMTP server, on 127.0.0.1:2525, storing every message in a Maildir, and
#   a second one on 127.0.0.1:2526 that requires AUTH (scripts/smtp_auth_server.py);
#   PostgreSQL on 127.0.0.1:5433 (Debian's package, installed with apt where absent), a
#   throwaway cluster under the state directory.
#
#   scripts/services.sh [start]   start what is not running; print the environment the tests read
#   scripts/services.sh stop      stop the services this script started
#
# Idempotent: services already up are reused. Each service runs detached, with every standard
# stream pointed at its log file, so that `eval "$(scripts/services.sh)"` returns at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# One place per machine: a service started by another checkout is reused with its mailbox.
state=${FORWARDER_TEST_STATE:-${TMPDIR:-/tmp}/forwarder-test-services}
venv=$root/localstack/.venv
mkdir -p "$state/maildir"/{cur,new,tmp}

s3_up() { curl -sf 127.0.0.1:4566/_localstack/health 2>/dev/null | grep -q '"s3": "\(available\|running\)"'; }
smtp_up() { (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null; }
smtp_auth_up() { (exec 3<>/dev/tcp/127.0.0.1/2526) 2>/dev/null; }
pg_port=5433
pg_bin() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }
pg_up() { local bin; bin=$(pg_bin); [ -n "$bin" ] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres; }

# Starts "$@" in its own session, detached from this script's streams, and records its pid.
detach() {
  local name=$1; shift
  (cd "$state" && exec setsid "$@") </dev/null >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}

stop() {
  for name in localstack smtp smtp-auth postgres; do
    if [ -f "$state/$name.pid" ]; then
      pid=$(cat "$state/$name.pid")
      # setsid made the service a process-group leader: stop it with its children (SIGINT is
      # PostgreSQL's fast shutdown; the Python services end on it too).
      kill -INT -- "-$pid" 2>/dev/null || kill -INT "$pid" 2>/dev/null || true
      # Gone before the script returns: a new start must not meet the old one's files.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      rm -f "$state/$name.pid"
      echo "stopped $name" >&2
    fi
  done
}

if [ "${1:-start}" = stop ]; then stop; exit 0; fi

if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/localstack/requirements.txt" "$venv/.installed" ; then
  echo "installing LocalStack and aiosmtpd into $venv (pinned, see localstack/requirements.txt)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/localstack/requirements.txt" >&2
  cp "$root/localstack/requirements.txt" "$venv/.installed"
fi

# Devo's own SDK, in a venv of its own (it needs a newer pyOpenSSL than LocalStack).
devo_venv=$root/tests/devo-sdk/.venv
if [ ! -x "$devo_venv/bin/python" ] || ! cmp -s "$root/tests/devo-sdk/requirements.txt" "$devo_venv/.installed" ; then
  echo "installing Devo's Python SDK into $devo_venv (pinned, see tests/devo-sdk/requirements.txt)" >&2
  python3 -m venv "$devo_venv"
  "$devo_venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/devo-sdk/requirements.txt" >&2
  cp "$root/tests/devo-sdk/requirements.txt" "$devo_venv/.installed"
fi

if ! s3_up; then
  echo "starting LocalStack (S3) on 127.0.0.1:4566" >&2
  GATEWAY_LISTEN=127.0.0.1:4566 SERVICES=s3 DISABLE_EVENTS=1 LOCALSTACK_VOLUME_DIR="$state/ls" \
    detach localstack "$venv/bin/python" -m localstack.runtime.main
  for _ in $(seq 1 120); do s3_up && break; sleep 1; done
  s3_up || { echo "LocalStack did not start; see $state/localstack.log" >&2; tail -30 "$state/localstack.log" >&2; exit 1; }
fi

if ! smtp_up; then
  echo "starting aiosmtpd (SMTP) on 127.0.0.1:2525, mail in $state/maildir" >&2
  detach smtp "$venv/bin/python" -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox "$state/maildir"
  for _ in $(seq 1 60); do smtp_up && break; sleep 0.5; done
  smtp_up || { echo "aiosmtpd did not start; see $state/smtp.log" >&2; tail -30 "$state/smtp.log" >&2; exit 1; }
fi

if ! smtp_auth_up; then
  echo "starting an SMTP server that requires AUTH on 127.0.0.1:2526, logins in $state/smtp-logins" >&2
  detach smtp-auth "$venv/bin/python" "$root/scripts/smtp_auth_server.py" 2526 "$state/maildir" "$state/smtp-logins"
  for _ in $(seq 1 60); do smtp_auth_up && break; sleep 0.5; done
  smtp_auth_up || { echo "the AUTH SMTP server did not start; see $state/smtp-auth.log" >&2; tail -30 "$state/smtp-auth.log" >&2; exit 1; }
fi

if ! pg_up; then
  if [ -z "$(pg_bin)" ]; then
    echo "installing PostgreSQL (apt)" >&2
    { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq postgresql; } >&2 \
      || { echo "could not install PostgreSQL" >&2; exit 1; }
  fi
  bin=$(pg_bin)
  pgdata=$state/pg
  # PostgreSQL will not run as root: as root, the cluster belongs to the package's `postgres` user.
  as=()
  if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    echo "creating a PostgreSQL cluster in $pgdata" >&2
    rm -rf "$pgdata" && mkdir -p "$pgdata"
    if [ "$(id -u)" = 0 ]; then chown postgres "$pgdata"; fi
    "${as[@]}" "$bin/initdb" -D "$pgdata" -U postgres -A trust --no-sync >"$state/initdb.log" 2>&1 \
      || { echo "initdb failed; see $state/initdb.log" >&2; tail -20 "$state/initdb.log" >&2; exit 1; }
  fi
  echo "starting PostgreSQL on 127.0.0.1:$pg_port" >&2
  detach postgres "${as[@]}" "$bin/postgres" -D "$pgdata" -p "$pg_port" -k "$pgdata" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || { echo "PostgreSQL did not start; see $state/postgres.log" >&2; tail -30 "$state/postgres.log" >&2; exit 1; }
fi

cat <<ENV
export FORWARDER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
export FORWARDER_TEST_S3_ENDPOINT=http://127.0.0.1:4566
export FORWARDER_TEST_SMTP_URL=smtp://127.0.0.1:2525
export FORWARDER_TEST_SMTP_AUTH_URL=smtp://127.0.0.1:2526
export FORWARDER_TEST_SMTP_LOGINS=$state/smtp-logins
export FORWARDER_TEST_MAILDIR=$state/maildir
export FORWARDER_TEST_DEVO_PYTHON=$devo_venv/bin/python
ENV
