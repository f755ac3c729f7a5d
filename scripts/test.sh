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
cleanup() {
  rm -f "$env_file"
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
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
