#!/usr/bin/env bash
# Installs (once) and starts the real services the tests talk to, without Docker:
#   LocalStack (S3) on 127.0.0.1:4566, from localstack/requirements.txt in a venv;
#   aiosmtpd, a real SMTP server, on 127.0.0.1:2525, storing every message in a Maildir, and
#   a second one on 127.0.0.1:2526 that requires AUTH (scripts/smtp_auth_server.py);
#   PostgreSQL on 127.0.0.1:5433 (Debian's package, installed with apt where absent), a
#   throwaway cluster under the state directory;
#   Azurite (the Azure Blob Storage emulator, from npm, pinned below) on 127.0.0.1:10000, with
#   Node.js from apt where absent, its blobs under the state directory.
#
#   scripts/services.sh [start]   start what is not running; print the environment the tests read
#   scripts/services.sh stop      stop the services this script started
#
# Idempotent: services already up are reused. Each service runs detached, with every standard
# stream pointed at its log file, so that `eval "$(scripts/services.sh)"` returns at once.
#
# A port is not trusted: what answers there must be the service the tests expect (LocalStack
# by its health answer; each SMTP server by aiosmtpd's banner and by a probe message that
# must land in this state's Maildir, the AUTH one also by its AUTH and its record of logins;
# PostgreSQL by a query as user `postgres`; Azurite by its `Server` header on an answer from
# the emulator's well-known account). Where something else holds a port, ours is
# started on a free port instead, and the environment printed says where. The default ports
# can be changed with FORWARDER_TEST_{LOCALSTACK,SMTP,SMTP_AUTH,POSTGRES,AZURITE}_PORT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# One place per machine: a service started by another checkout is reused with its mailbox.
state=${FORWARDER_TEST_STATE:-${TMPDIR:-/tmp}/forwarder-test-services}
venv=$root/localstack/.venv
mkdir -p "$state/maildir"/{cur,new,tmp}

pg_bin() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# check_<service> PORT: 0 when the tests' service answers on PORT, 2 when nothing listens
# there, 1 when something else does (described in $why).
why=
check_localstack() {
  local health
  if ! health=$(curl -s -m 5 "http://127.0.0.1:$1/_localstack/health" 2>/dev/null); then
    listening "$1" || return 2
    why="it does not answer HTTP"; return 1
  fi
  echo "$health" | grep -q '"s3": "\(available\|running\)"' && return 0
  why="its /_localstack/health answer is not LocalStack's with S3 running: ${health:0:100}"; return 1
}
check_azurite() {
  local headers
  if ! headers=$(curl -s -m 5 -o /dev/null -D - "http://127.0.0.1:$1/devstoreaccount1?comp=list" 2>/dev/null); then
    listening "$1" || return 2
    why="it does not answer HTTP"; return 1
  fi
  echo "$headers" | grep -qi '^server: Azurite-Blob/' && return 0
  why="its answer does not come from Azurite's blob service"; return 1
}
check_smtp() { why=$(python3 "$root/scripts/smtp_probe.py" "$1" "$state/maildir" 2>&1 >/dev/null); }
check_smtp_auth() { why=$(python3 "$root/scripts/smtp_probe.py" "$1" "$state/maildir" "$state/smtp-logins" 2>&1 >/dev/null); }
check_postgres() {
  local bin; bin=$(pg_bin)
  if [ -z "$bin" ] || ! "$bin/pg_isready" -q -t 3 -h 127.0.0.1 -p "$1"; then
    listening "$1" || return 2
    why="it does not answer as PostgreSQL"; return 1
  fi
  # The tests log in as postgres without a password and create a database each.
  local may
  may=$(PGCONNECT_TIMEOUT=3 "$bin/psql" -X -w -h 127.0.0.1 -p "$1" -U postgres -d postgres -tAc \
    "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user" 2>/dev/null) || may=
  [ "$may" = t ] && return 0
  why="a PostgreSQL server where user postgres cannot log in without a password or may not create databases"; return 1
}

# Where SERVICE runs or is to be started: the port this state directory started it on, else
# DEFAULT. Sets $port, and $up=1 when the service already answers there; a port something
# else holds is passed over for a free one.
place() {
  local service=$1 default=$2 rc=0 free
  port=$(cat "$state/$service.port" 2>/dev/null || echo "$default")
  "check_${service//-/_}" "$port" || rc=$?
  up=0
  case $rc in
    0) up=1 ;;
    2) ;;
    *)
      free=$(free_port)
      echo "127.0.0.1:$port is held by something other than the tests' $service ($why); starting $service on 127.0.0.1:$free instead" >&2
      port=$free ;;
  esac
}

# Waits until SERVICE answers on PORT; on failure, says what answers there and shows its log.
await() {
  local service=$1 port=$2 tries=$3 pause=$4
  for _ in $(seq 1 "$tries"); do "check_${service//-/_}" "$port" && { echo "$port" >"$state/$service.port"; return 0; }; sleep "$pause"; done
  echo "$service did not come up on 127.0.0.1:$port (${why:-nothing answers there}); see $state/$service.log" >&2
  tail -30 "$state/$service.log" >&2
  exit 1
}

# Starts "$@" in its own session, detached from this script's streams, and records its pid.
detach() {
  local name=$1; shift
  (cd "$state" && exec setsid "$@") </dev/null >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}

stop() {
  for name in localstack smtp smtp-auth postgres azurite; do
    if [ -f "$state/$name.pid" ]; then
      pid=$(cat "$state/$name.pid")
      # setsid made the service a process-group leader: stop it with its children (SIGINT is
      # PostgreSQL's fast shutdown; the Python services end on it too).
      kill -INT -- "-$pid" 2>/dev/null || kill -INT "$pid" 2>/dev/null || true
      # Gone before the script returns: a new start must not meet the old one's files.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      rm -f "$state/$name.pid" "$state/$name.port"
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

# A ksqlDB REST client (ksql-python-ng), in a venv of its own.
ksql_venv=$root/tests/ksql-client/.venv
if [ ! -x "$ksql_venv/bin/python" ] || ! cmp -s "$root/tests/ksql-client/requirements.txt" "$ksql_venv/.installed" ; then
  echo "installing a ksqlDB REST client into $ksql_venv (pinned, see tests/ksql-client/requirements.txt)" >&2
  python3 -m venv "$ksql_venv"
  "$ksql_venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/ksql-client/requirements.txt" >&2
  cp "$root/tests/ksql-client/requirements.txt" "$ksql_venv/.installed"
fi

# The readers users open Parquet and zstd parts with: pyarrow, DuckDB, zstandard.
readers_venv=$root/tests/readers/.venv
if [ ! -x "$readers_venv/bin/python" ] || ! cmp -s "$root/tests/readers/requirements.txt" "$readers_venv/.installed" ; then
  echo "installing pyarrow and DuckDB into $readers_venv (pinned, see tests/readers/requirements.txt)" >&2
  python3 -m venv "$readers_venv"
  "$readers_venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/readers/requirements.txt" >&2
  cp "$root/tests/readers/requirements.txt" "$readers_venv/.installed"
fi

place localstack "${FORWARDER_TEST_LOCALSTACK_PORT:-4566}"
s3_port=$port
if [ "$up" = 0 ]; then
  echo "starting LocalStack (S3) on 127.0.0.1:$s3_port" >&2
  GATEWAY_LISTEN=127.0.0.1:$s3_port SERVICES=s3 DISABLE_EVENTS=1 LOCALSTACK_VOLUME_DIR="$state/ls" \
    detach localstack "$venv/bin/python" -m localstack.runtime.main
  await localstack "$s3_port" 120 1
fi

place smtp "${FORWARDER_TEST_SMTP_PORT:-2525}"
smtp_port=$port
if [ "$up" = 0 ]; then
  echo "starting aiosmtpd (SMTP) on 127.0.0.1:$smtp_port, mail in $state/maildir" >&2
  detach smtp "$venv/bin/python" -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$state/maildir"
  await smtp "$smtp_port" 60 0.5
fi

place smtp-auth "${FORWARDER_TEST_SMTP_AUTH_PORT:-2526}"
smtp_auth_port=$port
if [ "$up" = 0 ]; then
  echo "starting an SMTP server that requires AUTH on 127.0.0.1:$smtp_auth_port, logins in $state/smtp-logins" >&2
  detach smtp-auth "$venv/bin/python" "$root/scripts/smtp_auth_server.py" "$smtp_auth_port" "$state/maildir" "$state/smtp-logins"
  await smtp-auth "$smtp_auth_port" 60 0.5
fi

place postgres "${FORWARDER_TEST_POSTGRES_PORT:-5433}"
pg_port=$port
if [ "$up" = 0 ]; then
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
  await postgres "$pg_port" 60 0.5
fi

# Azurite, pinned; it asks for Node.js 22 but serves blobs on Node.js 20 (Debian's) as well.
azurite_version=3.37.0
azurite_dir=$state/azurite-$azurite_version
place azurite "${FORWARDER_TEST_AZURITE_PORT:-10000}"
azurite_port=$port
if [ "$up" = 0 ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing Node.js and npm (apt)" >&2
    { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq nodejs npm; } >&2 \
      || { echo "could not install Node.js" >&2; exit 1; }
  fi
  if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
    echo "installing Azurite $azurite_version into $azurite_dir (npm)" >&2
    mkdir -p "$azurite_dir"
    timeout 900 npm install --silent --no-audit --no-fund --prefix "$azurite_dir" "azurite@$azurite_version" >&2 \
      || { echo "could not install Azurite" >&2; exit 1; }
  fi
  mkdir -p "$state/azurite-data"
  echo "starting Azurite (Azure Blob Storage) on 127.0.0.1:$azurite_port" >&2
  detach azurite "$azurite_dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$azurite_port" \
    --location "$state/azurite-data" --skipApiVersionCheck --loose
  await azurite "$azurite_port" 60 0.5
fi

cat <<ENV
export FORWARDER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
export FORWARDER_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export FORWARDER_TEST_SMTP_URL=smtp://127.0.0.1:$smtp_port
export FORWARDER_TEST_SMTP_AUTH_URL=smtp://127.0.0.1:$smtp_auth_port
export FORWARDER_TEST_SMTP_LOGINS=$state/smtp-logins
export FORWARDER_TEST_MAILDIR=$state/maildir
export FORWARDER_TEST_DEVO_PYTHON=$devo_venv/bin/python
export FORWARDER_TEST_KSQL_PYTHON=$ksql_venv/bin/python
export FORWARDER_TEST_READERS_PYTHON=$readers_venv/bin/python
export FORWARDER_TEST_AZURITE_ENDPOINT=http://127.0.0.1:$azurite_port/devstoreaccount1
ENV
