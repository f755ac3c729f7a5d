#!/usr/bin/env bash
# The whole test suite on a fresh machine: starts LocalStack (S3) and a real SMTP server
# (installing them on first use), then runs every unit and integration test.
# Services this run started are stopped when it ends; services already running are reused
# and left running (start them once with scripts/services.sh for a fast edit-test loop).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=${FORWARDER_TEST_STATE:-${TMPDIR:-/tmp}/forwarder-test-services}
mkdir -p "$state"
had_pids=$(ls "$state"/*.pid 2>/dev/null || true)
env_file=$(mktemp)
# The tests' own temporary files (tables, parts, keys, stores) go under one directory per
# run, removed when the run ends: tests that fail or are killed leave nothing behind in /tmp.
find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'forwarder-test-run.*' -mmin +720 -exec rm -rf {} + 2>/dev/null || true
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/forwarder-test-run.XXXXXX")
cleanup() {
  rm -f "$env_file"
  rm -rf "$run_tmp"
  if [ -z "$had_pids" ] && [ -z "${FORWARDER_KEEP_SERVICES:-}" ]; then scripts/services.sh stop; fi
}
trap cleanup EXIT
# Tools the tests run, as users do: 7-Zip opens the AES zips, zstd reads zstd parts, openssl makes the HTTPS test's
# certificate. Installed with apt where missing.
missing=""
command -v 7z >/dev/null 2>&1 || missing="$missing p7zip-full"
command -v zstd >/dev/null 2>&1 || missing="$missing zstd"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
if [ -n "$missing" ]; then
  echo "installing$missing (apt)" >&2
  # shellcheck disable=SC2086
  { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq $missing; } >&2 \
    || echo "could not install$missing: the tests that use them will fail" >&2
fi
# The offline validators of deploy/ (compose and Kubernetes schemas, tests/it/deploy.rs), pinned, in a venv.
deploy_venv=$root/tests/deploy/.venv
if [ ! -x "$deploy_venv/bin/python" ] || ! cmp -s tests/deploy/requirements.txt "$deploy_venv/.installed"; then
  echo "installing the deploy/ validators into $deploy_venv (pinned, see tests/deploy/requirements.txt)" >&2
  python3 -m venv "$deploy_venv"
  "$deploy_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/deploy/requirements.txt >&2
  cp tests/deploy/requirements.txt "$deploy_venv/.installed"
fi
export FORWARDER_TEST_DEPLOY_PYTHON=$deploy_venv/bin/python
# Into a file, not through a pipe: nothing a service inherits can keep this script waiting.
scripts/services.sh >"$env_file"
# shellcheck disable=SC1090
. "$env_file"
# Each test makes a database of its own (forwarder_it_…); the ones earlier runs made are
# dropped, in the background (a drop takes about a second: it waits for a checkpoint), so
# that a reused PostgreSQL does not grow by a run's worth of databases every time. Only the
# names listed now go: this run's own databases are made after.
pg_bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
if [ -n "$pg_bin" ]; then
  old_dbs=$("$pg_bin/psql" -X -w -q "$FORWARDER_TEST_POSTGRES_URL" -tAc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'forwarder\_it\_%'" 2>/dev/null || true)
  if [ -n "$old_dbs" ]; then
    echo "dropping $(wc -l <<<"$old_dbs") test databases of earlier runs (in the background)" >&2
    sed 's/.*/DROP DATABASE IF EXISTS "&" WITH (FORCE);/' <<<"$old_dbs" \
      | nohup nice "$pg_bin/psql" -X -w -q "$FORWARDER_TEST_POSTGRES_URL" >/dev/null 2>&1 &
  fi
fi
export TMPDIR=$run_tmp
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
