//! Parquet parts through the real API and worker to LocalStack, opened by the readers users
//! open them with: pyarrow (schema, row groups, statistics, every value) and DuckDB
//! (`read_parquet`), from `tests/readers/.venv`, which scripts/services.sh installs.

use std::process::Command;

use serde_json::{Value, json};

use crate::common::*;
use crate::formats::as_csv_field;

const QUERY: &str = "SELECT * FROM demo.ecommerce.data WHERE statusCode >= 200";
const PART_BYTES: u64 = 60_000;

/// Reads one Parquet file with pyarrow and DuckDB; prints a summary line, then one JSON
/// object per row (timestamps as ISO-8601 UTC with milliseconds, as JSON Lines parts have them).
const READ: &str = r#"
import sys, json, datetime, duckdb, pyarrow.parquet as pq
path = sys.argv[1]
f = pq.ParquetFile(path)
md = f.metadata
for g in range(md.num_row_groups):
    for c in range(md.num_columns):
        assert md.row_group(g).column(c).statistics is not None, ("no statistics", g, c)
t = f.read()
n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
assert n == t.num_rows, ("DuckDB and pyarrow disagree", n, t.num_rows)
codecs = sorted({md.row_group(g).column(c).compression for g in range(md.num_row_groups) for c in range(md.num_columns)})
print(json.dumps({"types": {x.name: str(x.type) for x in t.schema}, "row_groups": md.num_row_groups, "codecs": codecs}))
def conv(v):
    if isinstance(v, datetime.datetime):
        return v.strftime('%Y-%m-%dT%H:%M:%S.') + f'{v.microsecond // 1000:03d}Z'
    return v
for row in t.to_pylist():
    print(json.dumps({k: conv(v) for k, v in row.items()}))
"#;

fn readers_python() -> String {
    std::env::var("FORWARDER_TEST_READERS_PYTHON")
        .expect("FORWARDER_TEST_READERS_PYTHON (pyarrow, DuckDB): run the tests with scripts/test.sh")
}

/// The part as pyarrow and DuckDB read it: (summary, rows as JSON objects).
pub(crate) fn read_parquet(key: &str, bytes: &[u8]) -> (Value, Vec<Value>) {
    let dir = std::env::temp_dir().join(format!("forwarder-it-parquet-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(key);
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(readers_python()).args(["-c", READ]).arg(&path).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{key}: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines =
        std::str::from_utf8(&out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap());
    let summary = lines.next().unwrap();
    (summary, lines.collect())
}

async fn parquet_export(codec: Option<&str>) {
    let app = spawn_app(5_000).await;
    let mut params = json!({"file.format": "parquet", "retention.size": PART_BYTES as f64 / 1e6});
    if let Some(c) = codec {
        params["parquet.compression"] = json!(c);
    }
    let id = app.submit_export(QUERY, params).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");
    assert_eq!(job["extra"]["format"], "parquet");

    let direct = app.direct_rows(QUERY).await;
    let (header, expected) = direct.split_first().unwrap();
    let keys = app.keys().await;
    assert!(keys.len() >= 2, "rotated by size ({} parts)", keys.len());
    let want_codec = match codec.unwrap_or("zstd") {
        "none" => "UNCOMPRESSED".to_string(),
        "lz4" => "LZ4_RAW".to_string(),
        c => c.to_uppercase(),
    };
    let mut got: Vec<Vec<String>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key, &format!("apiv2_{id}_{:03}.parquet", i + 1));
        let (bytes, stored_type) = app.object(key).await;
        assert_eq!(stored_type.as_deref(), Some("application/vnd.apache.parquet"), "{key}");
        assert!(bytes.len() as u64 <= PART_BYTES + (1 << 20), "{key} is {} bytes", bytes.len());
        assert_eq!(job["extra"]["parts"][i]["bytes"], bytes.len() as u64);
        let (summary, rows) = read_parquet(key, &bytes);
        assert_eq!(summary["codecs"], json!([want_codec]), "{key}: {summary}");
        assert_eq!(summary["types"]["eventdate"], "timestamp[ms]", "the query's types are kept: {summary}");
        assert!(summary["types"]["statusCode"].as_str().unwrap().starts_with("int"), "{summary}");
        assert!(!rows.is_empty(), "no empty part");
        assert_eq!(job["extra"]["parts"][i]["rows"], rows.len() as u64);
        got.extend(rows.iter().map(|row| {
            let object = row.as_object().unwrap();
            header.iter().map(|column| as_csv_field(column, &object[column])).collect::<Vec<_>>()
        }));
    }
    let mut want = expected.to_vec();
    want.sort();
    got.sort();
    assert!(got == want, "the parts hold exactly the query's rows ({} vs {})", got.len(), want.len());
    assert_eq!(app.open_multipart_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_zstd_export_opens_in_pyarrow_and_duckdb() {
    parquet_export(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_snappy_export() {
    parquet_export(Some("snappy")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_uncompressed_export() {
    parquet_export(Some("none")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_parquet_combinations_are_refused_and_nothing_is_queued() {
    let app = spawn_app(10).await;
    let cases = [
        (json!({"file.format": "parquet", "format": "gzip"}), 210, "leave format out"),
        (json!({"file.format": "parquet", "format": "zip"}), 210, "parquet.compression"),
        (
            json!({"file.format": "parquet", "parquet.compression": "brotli"}),
            219,
            "use zstd, snappy, gzip, lz4, none",
        ),
        (json!({"file.format": "csv", "parquet.compression": "zstd"}), 219, "only with file.format parquet"),
        (json!({"file.format": "parquet", "file.password": "pw"}), 211, "only with format zip"),
        (json!({"file.format": "parquet", "manifest": "yes please"}), 220, "manifest must be true or false"),
    ];
    assert_refused_and_nothing_queued(&app, QUERY, &cases).await;
}

/// `manifest: true`: after the last part, `apiv2_<jobid>_manifest.json` lists every part as
/// Redshift's `COPY … MANIFEST` reads it, with the schema, the total and each part's SHA-256,
/// all matching the objects in the bucket; its URL is in the job's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_lists_every_part_with_its_size_rows_and_checksum() {
    use sha2::{Digest, Sha256};

    let app = spawn_app(5_000).await;
    let params = json!({"file.format": "jsonl", "format": "zstd", "manifest": true,
                        "retention.size": PART_BYTES as f64 / 1e6});
    let id = app.submit_export(QUERY, params).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");

    let manifest_key = format!("apiv2_{id}_manifest.json");
    let mut keys = app.keys().await;
    assert!(keys.contains(&manifest_key), "{keys:?}");
    keys.retain(|k| k != &manifest_key);
    assert!(keys.len() >= 2, "several parts: {keys:?}");
    let manifest_url =
        job["extra"]["manifest"].as_str().expect("the manifest's URL in the status").to_string();
    assert!(manifest_url.ends_with(&manifest_key), "{manifest_url}");

    let (body, content_type) = app.object(&manifest_key).await;
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let m: Value = serde_json::from_slice(&body).unwrap();
    let entries = m["entries"].as_array().unwrap();
    assert_eq!(entries.len(), keys.len(), "{m:#}");
    let paths = job["extra"]["paths"].as_array().unwrap();
    let direct = app.direct_rows(QUERY).await;
    let mut total = 0;
    for (i, key) in keys.iter().enumerate() {
        let (bytes, _) = app.object(key).await;
        let e = &entries[i];
        // Redshift's `COPY … MANIFEST` reads `s3://bucket/key`; the status lists the HTTPS form.
        let s3_url = format!("s3://{}/{key}", app.bucket);
        assert!(paths[i].as_str().unwrap().ends_with(key.as_str()), "parts in order: {paths:?}");
        assert_eq!(e["url"], s3_url.as_str(), "entries in part order, as s3:// URLs");
        assert_eq!(e["mandatory"], true);
        assert_eq!(e["meta"]["content_length"], bytes.len() as u64, "{key}");
        let rows = job["extra"]["parts"][i]["rows"].as_u64().unwrap();
        assert_eq!(e["meta"]["record_count"], rows, "{key}");
        let sha = hex::encode(Sha256::digest(&bytes));
        assert_eq!(m["checksums"][i], json!({"url": s3_url, "sha256": sha}), "{key}");
        assert_eq!(job["extra"]["parts"][i]["sha256"], sha.as_str());
        total += rows;
    }
    assert_eq!(m["total_rows"], total);
    assert_eq!(total as usize, direct.len() - 1, "the manifest counts the query's rows");
    assert_eq!(m["job_id"], id.as_str());
    let names: Vec<&str> =
        m["schema"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, direct[0].iter().map(String::as_str).collect::<Vec<_>>());
}
