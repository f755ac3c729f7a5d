#!/usr/bin/env bash
# The whole test suite on a fresh machine: starts LocalStack (S3) and a real SMTP server
# (installing them on first use), then runs every unit and integration test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(scripts/services.sh)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
