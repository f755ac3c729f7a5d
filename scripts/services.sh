#!/usr/bin/env bash
# Installs (once) and starts the real services the tests talk to, without Docker:
#   LocalStack (S3) on 127.0.0.1:4566, from localstack/requirements.txt in a venv;
#   aiosmtpd, a real SMTP server, on 127.0.0.1:2525, storing every message in a Maildir.
# Prints the environment the tests read. Idempotent: services already up are reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# One place per machine: a service started by another checkout is reused with its mailbox.
state=${FORWARDER_TEST_STATE:-${TMPDIR:-/tmp}/forwarder-test-services}
venv=$root/localstack/.venv
mkdir -p "$state/maildir"/{cur,new,tmp}

if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/localstack/requirements.txt" "$venv/.installed" ; then
  echo "installing LocalStack and aiosmtpd into $venv (pinned, see localstack/requirements.txt)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/localstack/requirements.txt"
  cp "$root/localstack/requirements.txt" "$venv/.installed"
fi

if ! curl -sf 127.0.0.1:4566/_localstack/health | grep -q '"s3": "\(available\|running\)"'; then
  echo "starting LocalStack (S3) on 127.0.0.1:4566" >&2
  (cd "$state" && GATEWAY_LISTEN=127.0.0.1:4566 SERVICES=s3 DISABLE_EVENTS=1 LOCALSTACK_VOLUME_DIR="$state/ls" \
     nohup "$venv/bin/python" -m localstack.runtime.main > "$state/localstack.log" 2>&1 &)
  for _ in $(seq 1 120); do
    curl -sf 127.0.0.1:4566/_localstack/health 2>/dev/null | grep -q '"s3": "\(available\|running\)"' && break
    sleep 1
  done
  curl -sf 127.0.0.1:4566/_localstack/health | grep -q '"s3"' || { echo "LocalStack did not start; see $state/localstack.log" >&2; tail -30 "$state/localstack.log" >&2; exit 1; }
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null; then
  echo "starting aiosmtpd (SMTP) on 127.0.0.1:2525, mail in $state/maildir" >&2
  nohup "$venv/bin/python" -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox "$state/maildir" \
    > "$state/smtp.log" 2>&1 &
  for _ in $(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.5; done
fi

cat <<ENV
export FORWARDER_TEST_S3_ENDPOINT=http://127.0.0.1:4566
export FORWARDER_TEST_SMTP_URL=smtp://127.0.0.1:2525
export FORWARDER_TEST_MAILDIR=$state/maildir
ENV
