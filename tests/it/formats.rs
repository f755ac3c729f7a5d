//! Every encoding × compression through the real API and worker to LocalStack: the objects
//! are read back and opened by the tools a user would use (`gzip -d`, `zstd -d`, Python's
//! `zipfile`), and their rows compared with the query's, value by value.

use std::process::Command;

use serde_json::{Value, json};

use crate::common::*;

const QUERY: &str = "SELECT * FROM demo.ecommerce.data WHERE statusCode >= 200";
/// Small parts, so that each export rotates.
const PART_BYTES: u64 = 60_000;

/// The stored object decompressed by the real tool for `format`.
fn decompress(format: &str, key: &str, bytes: &[u8], entry: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("forwarder-it-formats-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(key);
    std::fs::write(&path, bytes).unwrap();
    let mut cmd = match format {
        "gzip" => {
            let mut c = Command::new("gzip");
            c.arg("-dc").arg(&path);
            c
        }
        "zstd" => {
            let mut c = Command::new("zstd");
            c.args(["-dc", "--no-progress"]).arg(&path);
            c
        }
        "zip" => {
            let mut c = Command::new("python3");
            let py = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.namelist() == [sys.argv[2]], z.namelist()\nsys.stdout.buffer.write(z.read(sys.argv[2]))";
            c.args(["-c", py]).arg(&path).arg(entry);
            c
        }
        _ => return bytes.to_vec(),
    };
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs the tools)"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
    out.stdout
}

/// A JSON value as the CSV export writes it, so that both compare with the query's rows.
pub(crate) fn as_csv_field(column: &str, v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if column == "eventdate" => {
            assert!(s.len() == 24 && s.ends_with('Z') && &s[10..11] == "T", "ISO-8601 UTC: {s}");
            s[..23].replacen('T', " ", 1)
        }
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("{column}: unexpected {other}"),
    }
}

async fn export_in(file_format: &str, format: &str) {
    let app = spawn_app(3_000).await;
    let params =
        json!({"file.format": file_format, "format": format, "retention.size": PART_BYTES as f64 / 1e6});
    let id = app.submit_export(QUERY, params).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");

    let direct = app.direct_rows(QUERY).await;
    let (header, expected) = direct.split_first().unwrap();
    let (ext, content_type) = match format {
        "gzip" => ("gz", "application/gzip"),
        "zstd" => ("zst", "application/zstd"),
        "zip" => ("zip", "application/zip"),
        _ => ("", if file_format == "csv" { "text/csv" } else { "application/x-ndjson" }),
    };
    let suffix = if ext.is_empty() { file_format.to_string() } else { format!("{file_format}.{ext}") };
    assert_eq!(job["extra"]["format"], suffix.as_str());
    let keys = app.keys().await;
    assert!(keys.len() >= 2, "{file_format} {format}: rotated by size ({} parts)", keys.len());
    let mut got: Vec<Vec<String>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key, &format!("apiv2_{id}_{:03}.{suffix}", i + 1));
        let (bytes, stored_type) = app.object(key).await;
        assert_eq!(stored_type.as_deref(), Some(content_type), "{key}");
        assert!(bytes.len() as u64 <= PART_BYTES + (1 << 20), "{key} is {} bytes", bytes.len());
        assert_eq!(job["extra"]["parts"][i]["bytes"], bytes.len() as u64);
        let plain = decompress(format, key, &bytes, &format!("apiv2_{id}_{:03}.{file_format}", i + 1));
        let rows: Vec<Vec<String>> = if file_format == "csv" {
            let mut records = parse_csv(&plain);
            assert_eq!(&records.remove(0), header, "every CSV part starts with the header");
            records
        } else {
            let text = String::from_utf8(plain).unwrap();
            text.lines()
                .map(|line| {
                    let v: Value =
                        serde_json::from_str(line).unwrap_or_else(|e| panic!("{key}: {e}: {line}"));
                    let object = v.as_object().unwrap();
                    assert!(object["statusCode"].is_number(), "numbers stay numbers: {line}");
                    assert!(object["eventdate"].is_string());
                    header.iter().map(|column| as_csv_field(column, &object[column])).collect()
                })
                .collect()
        };
        assert!(!rows.is_empty(), "no empty part");
        assert_eq!(job["extra"]["parts"][i]["rows"], rows.len() as u64);
        got.extend(rows);
    }
    let mut want = expected.to_vec();
    want.sort();
    got.sort();
    assert!(
        got == want,
        "{file_format} {format}: the parts hold exactly the query's rows ({} vs {})",
        got.len(),
        want.len()
    );
    assert_eq!(app.open_multipart_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_gzip_export() {
    export_in("csv", "gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_zstd_export() {
    export_in("csv", "zstd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_zip_export() {
    export_in("csv", "zip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_plain_export() {
    export_in("csv", "plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_gzip_export() {
    export_in("jsonl", "gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_zstd_export() {
    export_in("jsonl", "zstd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_zip_export() {
    export_in("jsonl", "zip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_plain_export() {
    export_in("jsonl", "plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_file_format_is_refused_and_nothing_is_queued() {
    let app = spawn_app(10).await;
    let cases = [
        (json!({"file.format": "xml"}), 218, "use csv, jsonl"),
        (json!({"format": "brotli"}), 210, "use plain, gzip, zstd, zip"),
        (json!({"format": "zstd", "file.password": "pw"}), 211, "file.password works only with format zip"),
    ];
    assert_refused_and_nothing_queued(&app, QUERY, &cases).await;
}
