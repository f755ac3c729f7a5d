#!/usr/bin/env bash
# Side-by-side export benchmark: the same demo rows exported to LocalStack by Forwarder (through
# the real API and worker), DuckDB 1.5.5 and chDB 4.4 (from a Parquet file of the same rows),
# with `zstd -3 -T2` and `pigz -6 -p2` on the CSV as the limits; per case the CSV-equivalent
# MB/s (the CSV's size over the wall time), the stored size and the peak RSS, as a table.
#
#   bench/formats.sh [rows=2000000] [runs=3]     every case, every tool, runs rounds, medians
#   bench/formats.sh flat [runs=2]               Forwarder's peak RSS at 1M and 10M rows (CSV zstd)
#   bench/formats.sh stream [rows=2000000] [runs=3]   POST /v1/stream to curl on loopback (TSV, CSV)
#                                                beside DuckDB and chDB writing the same to a file (bench/stream.py)
#
# Settings (environment):
#   BENCH_SOURCES=csv,parquet   Forwarder's source table(s): the demo CSV, and/or the Parquet file
#                               the peers read (a case Forwarder refuses or fails is printed n/a);
#                               flat mode: csv
#   BENCH_CASES=csv-zstd,csv-gzip6,parquet-zstd,jsonl-zstd    (flat mode: csv-zstd)
#   BENCH_PEERS=duckdb,chdb     BENCH_LIMITS=1 (0: no zstd/pigz)   BENCH_JSONL_PEERS=0 (1: peers on JSON Lines too)
#   BENCH_FLAT_ROWS="1000000 10000000"   BENCH_PARQUET_COMPRESSION=snappy (the source file's codec)
#   BENCH_DIR (default target/bench)     BENCH_FORWARDER_BIN (default: the release build, built here)
#   FORWARDER_* settings reach Forwarder's server (e.g. FORWARDER_UPLOAD__CONCURRENCY).
# Installs what is missing: zstd and pigz (apt), the peers in bench/.venv (bench/requirements.txt).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=run
if [ "${1:-}" = flat ]; then mode=flat; shift; fi
if [ "${1:-}" = stream ]; then mode=stream; shift; fi
if [ $mode = flat ]; then
  runs=${1:-2}
  cases=${BENCH_CASES:-csv-zstd}
  sources=${BENCH_SOURCES-csv}
else
  rows=${1:-2000000}
  runs=${2:-3}
  cases=${BENCH_CASES:-csv-zstd,csv-gzip6,parquet-zstd,jsonl-zstd}
  sources=${BENCH_SOURCES-csv,parquet}
fi
work=${BENCH_DIR:-$root/target/bench}
mkdir -p "$work"

# LocalStack: reuse one that answers, else start it as the tests do.
endpoint=${FORWARDER_TEST_S3_ENDPOINT:-http://127.0.0.1:4566}
if [ $mode != stream ] && ! curl -s -m 5 "$endpoint/_localstack/health" 2>/dev/null | grep -q '"s3": "\(available\|running\)"'; then
  env_file=$(mktemp)
  scripts/services.sh >"$env_file"
  # shellcheck disable=SC1090
  . "$env_file"
  rm -f "$env_file"
  endpoint=$FORWARDER_TEST_S3_ENDPOINT
fi

# The limits' compressors and GNU time (for the peers' peak RSS).
missing=()
command -v zstd >/dev/null || missing+=(zstd)
command -v pigz >/dev/null || missing+=(pigz)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing ${missing[*]} (apt)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi

# The peers, pinned, in a venv of their own.
venv=$root/bench/.venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s bench/requirements.txt "$venv/.installed"; then
  echo "installing DuckDB and chDB into $venv (pinned, see bench/requirements.txt)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt >&2
  cp bench/requirements.txt "$venv/.installed"
fi

if [ -n "${BENCH_FORWARDER_BIN:-}" ]; then
  bin=$BENCH_FORWARDER_BIN
else
  nice -n 19 cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-$root/target}/release/forwarder
fi

# The demo table as CSV (Forwarder's generator), the same rows as Parquet (DuckDB converts),
# and a catalog naming either as demo.ecommerce.data.
pq_codec=${BENCH_PARQUET_COMPRESSION:-snappy}
make_data() { # rows → prints CSV,CATALOG_CSV,CATALOG_PARQUET,PARQUET
  local n=$1 dir=$work/demo-$1 catalog csv parquet
  catalog=$("$bin" gen-demo --dir "$dir" --rows "$n" 2>/dev/null | tail -1)
  csv=$dir/data/ecommerce-000.csv
  parquet=$dir/parquet/ecommerce-000.parquet
  if [[ ,$sources, == *,parquet,* || $mode = run ]] &&
     { [ ! -f "$parquet" ] || [ "$(cat "$dir/parquet/.made" 2>/dev/null)" != "$n $pq_codec" ]; }; then
    echo "writing $n rows as Parquet ($pq_codec) with DuckDB" >&2
    mkdir -p "$dir/parquet"
    rm -f "$dir/parquet/.made"
    "$venv/bin/python" bench/peer.py duckdb to-parquet "$csv" "$parquet.tmp" "$pq_codec"
    mv "$parquet.tmp" "$parquet"
    echo "$n $pq_codec" >"$dir/parquet/.made"
  fi
  cat >"$dir/catalog-parquet.toml" <<TOML
[[tables]]
name = "demo.ecommerce.data"
location = "parquet/ecommerce-000.parquet"
format = "parquet"
time_column = "eventdate"
TOML
  echo "$csv,$catalog,$dir/catalog-parquet.toml,$parquet"
}

common=(--bin "$bin" --python "$venv/bin/python" --work "$work" --endpoint "$endpoint" --runs "$runs"
        --sources "$sources" --cases "$cases" --peers "${BENCH_PEERS-duckdb,chdb}")
[ "${BENCH_LIMITS:-1}" = 1 ] || common+=(--no-limits)
[ "${BENCH_JSONL_PEERS:-0}" = 1 ] && common+=(--jsonl-peers)
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo '?'): $("$bin" --version 2>/dev/null || echo forwarder)" >&2

if [ $mode = flat ]; then
  specs=() counts=()
  for n in ${BENCH_FLAT_ROWS:-1000000 10000000}; do
    IFS=, read -r csv cat_csv cat_pq _ <<<"$(make_data "$n")"
    specs+=("$csv,$cat_csv,$cat_pq")
    counts+=("$n")
  done
  exec python3 bench/formats.py "${common[@]}" --flat "${counts[@]}" --flat-data "${specs[@]}"
fi
IFS=, read -r csv cat_csv cat_pq parquet <<<"$(make_data "$rows")"
if [ $mode = stream ]; then
  cd bench
  exec python3 stream.py --bin "$bin" --python "$venv/bin/python" --work "$work" --rows "$rows" --runs "$runs" \
    --sources "$sources" --peers "${BENCH_PEERS-duckdb,chdb}" --parquet "$parquet" \
    --catalog-csv "$cat_csv" --catalog-parquet "$cat_pq"
fi
exec python3 bench/formats.py "${common[@]}" --rows "$rows" --csv "$csv" --parquet "$parquet" \
  --catalog-csv "$cat_csv" --catalog-parquet "$cat_pq"
