#!/usr/bin/env bash
# Measures the memory backstop: runs each hostile query (self cross joins aggregated, sorted
# and grouped, functions whose output dwarfs their input) as the one job of a fresh server
# and prints how the job ended and the server's peak RSS (VmHWM).
#   bench/memory.sh [query_memory_mb] [memory_margin_mb] [rows] [debug|release]
# Expects the services of scripts/services.sh (LocalStack) to run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
budget=${1:-256}
margin=${2:-256}
rows=${3:-2000}
profile=${4:-debug}
work=${BENCH_DIR:-$root/target/bench-memory}
mkdir -p "$work"
endpoint=${FORWARDER_TEST_S3_ENDPOINT:-http://127.0.0.1:4566}
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/$profile/forwarder
[ -x "$bin" ] || { echo "build $bin first (cargo build --bin forwarder)" >&2; exit 1; }
catalog=$("$bin" gen-demo --dir "$work/demo-$rows" --rows "$rows" 2>/dev/null | tail -1)
port=18090
bucket=memory-$(date +%s)
curl -sf -X PUT "$endpoint/$bucket" >/dev/null
from=1767225600
to=$((from + (rows * 40) / 1000 + 1))
t="demo.ecommerce.data"
queries=(
  "SELECT a.cookie, count(*) AS n, string_agg(b.userAgent, ',') AS s FROM $t a, $t b GROUP BY a.cookie"
  "SELECT array_agg(b.uri) AS a FROM $t a, $t b"
  "SELECT a.userAgent || b.uri AS k, count(*) AS n FROM $t a, $t b GROUP BY a.userAgent || b.uri"
  "SELECT a.uri, b.userAgent FROM $t a, $t b ORDER BY a.uri, b.userAgent"
  "SELECT a.cookie, b.cookie AS c FROM $t a, $t b"
  "SELECT string_agg(userAgent, ',') AS s FROM $t"
  "SELECT repeat(uri, 100000) AS s FROM $t"
  "SELECT regexp_replace(userAgent, '', '$(printf 'y%.0s' $(seq 1 100))', 'g') AS s FROM $t"
  "SELECT $(for i in $(seq 1 20); do printf 'repeat(uri, %s) AS c%s, ' "$((1000 + i))" "$i"; done) 1 AS one FROM $t"
)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null || true' EXIT
printf '%-10s %9s %7s  %s\n' status "peak MiB" seconds query
for n in "${!queries[@]}"; do
  # BENCH_ONLY=0,3: only those queries (by position).
  [ -n "${BENCH_ONLY:-}" ] && [[ ",$BENCH_ONLY," != *",$n,"* ]] && continue
  query=${queries[$n]}
  rm -rf "$work/data"
  cat >"$work/memory.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$work/data"
catalog = "$catalog"
[worker]
query_memory_mb = $budget
memory_margin_mb = $margin
[s3]
allowed_endpoints = ["127.0.0.1"]
TOML
  RUST_LOG=${RUST_LOG:-warn} "$bin" serve --config "$work/memory.toml" >"$work/server-$n.log" 2>&1 &
  server=$!
  for _ in $(seq 1 600); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  auth="Authorization: Bearer $(cat "$work/data/initial-token")"
  body=$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "from": int(sys.argv[2]), "to": int(sys.argv[3]),
    "destination": {"type": "s3", "params": {"aws.bucket": sys.argv[4], "aws.region": "us-east-1",
    "aws.accesskey": "test", "aws.secretkey": "test", "aws.endpoint": sys.argv[5], "aws.pathstyle": True,
    "format": "gzip"}}}))' "$query" "$from" "$to" "$bucket" "$endpoint")
  start=$(date +%s.%N)
  id=$(curl -s "127.0.0.1:$port/search/query" -H "$auth" -H 'content-type: application/json' -d "$body" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["object"]["id"])')
  while :; do
    job=$(curl -sf -H "$auth" "127.0.0.1:$port/search/job/$id" || echo '"status":"GONE"')
    case $job in *'"status":"COMPLETED"'* | *'"status":"FAILED"'* | *'"status":"GONE"'*) break ;; esac
    sleep 0.2
  done
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
  up=$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$port/healthz" || true)
  status=$(echo "$job" | python3 -c 'import json,sys
try: j = json.load(sys.stdin)["object"]; print(j["status"], "|", " ".join(j["error"]).split("raise the limit (")[-1][:200])
except Exception: print("GONE |")')
  printf '%-10s %9d %7.1f  %s\n' "${status%% |*}" $((peak_kb / 1024)) "$secs" "${query:0:110}"
  echo "           healthz $up; ${status#*| }"
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
done
