#!/usr/bin/env bash
# Benchmark: export N demo rows (default 2,000,000) as gzip to LocalStack through the real
# API and worker, and report rows/s, CSV MB/s and the server's peak RSS.
#   bench/export.sh [rows] [format] [level]
# BENCH_DEST=file or BENCH_DEST=azure (Azurite, started by scripts/services.sh) exports to that
# destination instead of S3 (LocalStack).
# Uses the release build; starts LocalStack like the tests do (scripts/services.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rows=${1:-2000000}
format=${2:-gzip}
level=${3:-6}
work=${BENCH_DIR:-$root/target/bench}
mkdir -p "$work"
# Into a file, not through a pipe (as scripts/test.sh does).
env_file=$(mktemp)
scripts/services.sh >"$env_file"
# shellcheck disable=SC1090
. "$env_file"
rm -f "$env_file"
cargo build --release --quiet
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/forwarder

catalog=$("$bin" gen-demo --dir "$work/demo-$rows" --rows "$rows" 2>/dev/null | tail -1)
csv_bytes=$(stat -c %s "$work/demo-$rows/data/ecommerce-000.csv")
rm -rf "$work/data"
port=18080
cat > "$work/bench.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$work/data"
catalog = "$catalog"
[worker]
compression_level = $level
[s3]
allowed_endpoints = ["127.0.0.1"]
[destinations.file]
root = "$work/files"
TOML
bucket=bench-$(date +%s)
rm -rf "$work/files" && mkdir -p "$work/files"
case ${BENCH_DEST:-s3} in
  s3)
    curl -sf -X PUT "$FORWARDER_TEST_S3_ENDPOINT/$bucket" >/dev/null
    destination="{\"type\": \"s3\", \"params\": {\"aws.bucket\": \"$bucket\", \"aws.region\": \"us-east-1\",
      \"aws.accesskey\": \"test\", \"aws.secretkey\": \"test\", \"aws.endpoint\": \"$FORWARDER_TEST_S3_ENDPOINT\",
      \"aws.pathstyle\": true, \"format\": \"$format\"}}" ;;
  file)
    destination="{\"type\": \"file\", \"params\": {\"file.directory\": \"$bucket\", \"format\": \"$format\"}}" ;;
  azure)
    # Azurite's well-known development account and key; the container is made with the
    # tests' Shared Key signing, done here by python3.
    key=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
    python3 bench/azurite_container.py "$FORWARDER_TEST_AZURITE_ENDPOINT" "$bucket" "$key"
    destination="{\"type\": \"azure\", \"params\": {\"azure.account\": \"devstoreaccount1\", \"azure.container\": \"$bucket\",
      \"azure.accesskey\": \"$key\", \"azure.endpoint\": \"$FORWARDER_TEST_AZURITE_ENDPOINT\", \"format\": \"$format\"}}" ;;
  *) echo "BENCH_DEST must be s3, file or azure" >&2; exit 2 ;;
esac

RUST_LOG=${RUST_LOG:-warn} "$bin" serve --config "$work/bench.toml" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "127.0.0.1:$port/healthz" >/dev/null || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
auth="Authorization: Bearer $(cat "$work/data/initial-token")"
# RSS every 0.2 s while the job runs, to tell a steady level from a peak.
( while kill -0 "$server" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$server/status" 2>/dev/null; sleep 0.2; done ) > "$work/rss.samples" &
sampler=$!

from=1767225600
to=$(( from + (rows * 40) / 1000 + 1 ))
start=$(date +%s.%N)
id=$(curl -sf "127.0.0.1:$port/search/query" -H "$auth" -H 'content-type: application/json' -d @- <<JSON | python3 -c 'import json,sys; print(json.load(sys.stdin)["object"]["id"])'
{"query": "SELECT * FROM demo.ecommerce.data", "from": $from, "to": $to, "destination": $destination}
JSON
)
# Polled every 50 ms with nothing heavier than curl, so that the time is the job's own.
while :; do
  job=$(curl -sf -H "$auth" "127.0.0.1:$port/search/job/$id")
  case $job in *'"status":"COMPLETED"'*|*'"status":"FAILED"'*|*'"status":"STOPPED"'*|*'"status":"REMOVED"'*) break ;; esac
  sleep 0.05
done
end=$(date +%s.%N)
peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
# CPU seconds the server used (user + system), to see how much of both cores it had.
cpu_s=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$server/stat")
kill "$sampler" 2>/dev/null || true
echo "$job" | python3 -c '
import json, sys
j = json.load(sys.stdin)["object"]
rows, secs, csv, peak = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]), int(sys.argv[4]), int(sys.argv[5])
parts = j["extra"]["parts"]
stored = sum(p["bytes"] for p in parts)
status, error, sent = j["status"], " ".join(j["error"]), j["eventsSent"]
print(f"status          {status} {error}")
print(f"rows            {sent:,} in {len(parts)} parts")
print(f"time            {secs:.1f} s (submit to COMPLETED)")
print(f"rows/s          {rows / secs:,.0f}")
print(f"CSV MB/s        {csv / 1e6 / secs:.1f}  ({csv / 1e6:.0f} MB of CSV)")
print(f"stored          {stored / 1e6:.1f} MB ({stored / csv * 100:.1f}% of the CSV)")
print(f"peak RSS        {peak / 1024:.0f} MiB (server process, VmHWM)")
cpu = float(sys.argv[7])
print(f"server CPU      {cpu:.1f} s ({cpu / secs:.2f} cores busy on average, {csv / 1e6 / cpu:.0f} MB of CSV per CPU second)")
samples = sorted(int(l) for l in open(sys.argv[6]) if l.strip())
if samples:
    mid = samples[len(samples) // 2]
    print(f"RSS while running  median {mid / 1024:.0f} MiB, 90th percentile {samples[len(samples) * 9 // 10] / 1024:.0f} MiB ({len(samples)} samples)")
' "$rows" "$start" "$end" "$csv_bytes" "$peak_kb" "$work/rss.samples" "$cpu_s"
