#!/usr/bin/env bash
# Benchmark: export the same N-row demo table (default 2,000,000) with one call each
# (POST /v1/data/export-temp, Parquet, multi_file) to LocalStack (S3), Azurite (Azure) and the
# local file system, in one run of one server, and report per destination the time, MB/s
# (Parquet bytes written, and the table's CSV size for comparison with bench/export.sh) and
# the server's peak RSS during that export.
#   bench/destinations.sh [rows]
# Uses the release build (or BENCH_FORWARDER_BIN); starts LocalStack and Azurite like the tests do
# (scripts/services.sh).
# Compare only figures from the same run: this machine's speed drifts between hours.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rows=${1:-2000000}
work=${BENCH_DIR:-$root/target/bench}
mkdir -p "$work"
env_file=$(mktemp)
scripts/services.sh >"$env_file"
# shellcheck disable=SC1090
. "$env_file"
rm -f "$env_file"
if [ -n "${BENCH_FORWARDER_BIN:-}" ]; then
  bin=$BENCH_FORWARDER_BIN
else
  nice -n 19 cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-$root/target}/release/forwarder
fi

catalog=$("$bin" gen-demo --dir "$work/demo-$rows" --rows "$rows" 2>/dev/null | tail -1)
csv_bytes=$(stat -c %s "$work/demo-$rows/data/ecommerce-000.csv")
rm -rf "$work/data" "$work/files" && mkdir -p "$work/files"
port=18081
cat > "$work/destinations.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$work/data"
catalog = "$catalog"
[s3]
allowed_endpoints = ["127.0.0.1"]
[destinations.file]
root = "$work/files"
[export_temp]
request_timeout = "30m"
TOML
bucket=bench-$(date +%s)
curl -sf -X PUT "$FORWARDER_TEST_S3_ENDPOINT/$bucket" >/dev/null
# Azurite's well-known development account and key; the container is made with Shared Key
# signing, as bench/export.sh does.
key=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
python3 bench/azurite_container.py "$FORWARDER_TEST_AZURITE_ENDPOINT" "$bucket" "$key"

RUST_LOG=${RUST_LOG:-warn} "$bin" serve --config "$work/destinations.toml" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "127.0.0.1:$port/healthz" >/dev/null || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
auth="Authorization: Bearer $(cat "$work/data/initial-token")"

common="\"query\": \"SELECT * FROM demo.ecommerce.data\", \"bucket\": \"$bucket\", \"format\": \"Parquet\",
  \"target_file_size_bytes\": 268435456, \"include_metrics\": true"
printf '%-8s %10s %9s %9s %10s %12s\n' destination seconds "MB/s" "CSV MB/s" "peak RSS" rows
for dest in s3 azure file; do
  case $dest in
    s3) body="{$common, \"storage_type\": \"S3\", \"directory_path\": \"s3-run\",
          \"credentials\": {\"access_key\": \"test\", \"secret_key\": \"test\"},
          \"options\": {\"endpoint\": \"$FORWARDER_TEST_S3_ENDPOINT\", \"allow_http\": true}}" ;;
    azure) body="{$common, \"storage_type\": \"Azure\", \"directory_path\": \"azure-run\",
          \"credentials\": {\"access_key\": \"devstoreaccount1\", \"secret_key\": \"$key\"},
          \"options\": {\"endpoint\": \"$FORWARDER_TEST_AZURITE_ENDPOINT\", \"allow_http\": true}}" ;;
    file) body="{$common, \"storage_type\": \"File\", \"directory_path\": \"file-run\"}" ;;
  esac
  # RSS every 0.2 s during this export only: VmHWM would carry the previous one's peak.
  ( while kill -0 "$server" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$server/status" 2>/dev/null; sleep 0.2; done ) > "$work/rss-$dest.samples" &
  sampler=$!
  start=$(date +%s.%N)
  answer=$(curl -sS "127.0.0.1:$port/v1/data/export-temp" -H "$auth" -H 'content-type: application/json' -d "$body")
  end=$(date +%s.%N)
  kill "$sampler" 2>/dev/null || true
  echo "$answer" | python3 -c '
import json, sys
a = json.load(sys.stdin)
dest, secs, csv = sys.argv[1], float(sys.argv[3]) - float(sys.argv[2]), int(sys.argv[4])
if not a.get("success"):
    sys.exit(f"{dest}: {a}")
m, r = a["data"]["metrics"], a["data"]["export_result"]
peak = max((int(l) for l in open(sys.argv[5]) if l.strip()), default=0)
written, total = m["bytes_written"], r["total_row_count"]
print(f"{dest:<8} {secs:10.1f} {written / 1e6 / secs:9.1f} {csv / 1e6 / secs:9.1f} {peak / 1024:7.0f} MiB {total:12,}")
' "$dest" "$start" "$end" "$csv_bytes" "$work/rss-$dest.samples"
done
