//! `POST /v1/data/export-temp` over real HTTP to LocalStack (S3), Azurite (Azure) and the file
//! system: the files read back with the `parquet` crate (row groups, sizes, every row) or as
//! JSON Lines, the seed's answer, every refusal, and nothing left behind by a failure, a
//! timeout or a client that goes away.

use std::time::Duration;

use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backends::{AZURITE_ACCOUNT, AZURITE_KEY, Backend, azurite_endpoint};
use crate::common::*;
use crate::formats::as_csv_field;

const ALL: &str = "SELECT * FROM demo.ecommerce.data";
/// Nine million rows from a 3,000-row table: far longer than a test waits.
const LONG: &str = "SELECT a.uri, b.statusCode FROM demo.ecommerce.data a CROSS JOIN demo.ecommerce.data b";
const SECRET: &str = "test-secret-key-123";

async fn export_temp(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    let r = app.http.post(format!("{}/v1/data/export-temp", app.api)).json(body).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// A body exporting `query` to this app's LocalStack bucket under `out/`, plus `extra`.
fn s3_body(app: &TestApp, query: &str, extra: Value) -> Value {
    let mut body = json!({
        "query": query, "storage_type": "S3", "bucket": app.bucket, "directory_path": "out",
        "credentials": {"access_key": "test", "secret_key": SECRET},
        "options": {"endpoint": env("FORWARDER_TEST_S3_ENDPOINT"), "allow_http": true},
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

/// A Parquet file's row groups (uncompressed sizes) and rows as CSV records (header first).
fn read_parquet(bytes: Vec<u8>) -> (Vec<u64>, Vec<Vec<String>>) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
    let groups = reader.metadata().row_groups().iter().map(|g| g.total_byte_size() as u64).collect();
    let mut csv = forwarder::encode::csv::header(reader.schema());
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let mut rows = forwarder::encode::csv::BatchRows::new(&batch).unwrap();
        while rows.next_row(&mut csv).unwrap() {}
    }
    (groups, parse_csv(&csv))
}

/// JSON Lines as CSV records, in the columns' order of `header`.
fn jsonl_rows(bytes: &[u8], header: &[String]) -> Vec<Vec<String>> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| {
            let object: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
            header.iter().map(|c| as_csv_field(c, &object[c])).collect()
        })
        .collect()
}

fn sorted(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.sort();
    rows
}

/// Every Parquet file under `out/` in the bucket: (its row group sizes, its rows without
/// the header), checked against the answer's `files`.
async fn parquet_files(app: &TestApp, answer: &Value) -> Vec<(Vec<u64>, Vec<Vec<String>>)> {
    let keys = app.keys().await;
    let listed = answer["data"]["export_result"]["files"].as_array().unwrap();
    assert_eq!(keys.len(), listed.len(), "every file is in the answer: {keys:?}");
    let mut files = Vec::new();
    for (key, entry) in keys.iter().zip(listed) {
        assert!(key.starts_with("out/apiv2_") && key.ends_with(".parquet"), "{key}");
        let (bytes, content_type) = app.object(key).await;
        assert_eq!(content_type.as_deref(), Some("application/vnd.apache.parquet"));
        assert_eq!(entry["size_bytes"], bytes.len() as u64);
        let (groups, mut rows) = read_parquet(bytes);
        rows.remove(0);
        assert_eq!(
            (entry["num_row_groups"].as_u64(), entry["row_count"].as_u64()),
            (Some(groups.len() as u64), Some(rows.len() as u64))
        );
        files.push((groups, rows));
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_parts_close_row_groups_by_size_and_rotate_by_file_size() {
    let app = spawn_app(20_000).await;
    let expected = app.direct_rows(ALL).await;
    let body = s3_body(
        &app,
        ALL,
        json!({"row_group_size": 65_536, "target_file_size_bytes": 262_144, "include_metrics": true}),
    );
    let (status, answer) = export_temp(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["code"].as_u64(), answer["success"].as_bool()), (Some(200), Some(true)));
    assert_eq!(answer["exception"], Value::Null);
    let result = &answer["data"]["export_result"];
    assert_eq!(result["file_path"], format!("{}/{}/out/", env("FORWARDER_TEST_S3_ENDPOINT"), app.bucket));
    assert_eq!(result["total_row_count"], 20_000);
    assert!(answer["data"]["elapsed_time"].as_f64().unwrap() > 0.0);

    let files = parquet_files(&app, &answer).await;
    assert!(files.len() >= 2, "rotated by size: {} files", files.len());
    let groups: Vec<u64> = files.iter().flat_map(|(g, _)| g.clone()).collect();
    assert_eq!(result["num_row_groups"], groups.len() as u64);
    assert_eq!(result["total_uncompressed_byte_size"], groups.iter().sum::<u64>());
    assert_eq!(
        result["average_uncompressed_row_group_size"],
        groups.iter().sum::<u64>() / groups.len() as u64
    );
    assert!(groups.len() >= 10, "row groups close at about 64 KiB: {groups:?}");
    // A row group closes at 64 KiB (uncompressed), or earlier where its file reaches its target.
    assert!(groups.iter().all(|g| *g <= 65_536 + 8_192), "{groups:?}");
    let at_size = groups.iter().filter(|g| **g >= 60_000).count();
    assert!(at_size * 2 > groups.len(), "most row groups end at the size: {groups:?}");
    for key in app.keys().await {
        let size = app.object(&key).await.0.len();
        assert!(size <= 262_144 + 65_536, "{key} is {size} bytes, over the target");
    }
    let rows: Vec<Vec<String>> = files.into_iter().flat_map(|(_, r)| r).collect();
    assert!(sorted(rows) == sorted(expected[1..].to_vec()), "exactly the query's rows");

    let metrics = &answer["data"]["metrics"];
    assert!(metrics["peak_memory_bytes"].as_u64().unwrap() > 0, "{metrics}");
    assert_eq!(metrics["files_written"], app.keys().await.len());
    assert!(metrics["bytes_written"].as_u64().unwrap() > 0);
    for t in ["total_ms", "query_ms", "encode_ms", "upload_ms"] {
        assert!(metrics["timings"][t].is_u64(), "{t}: {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_row_groups_per_file_takes_precedence() {
    let app = spawn_app(20_000).await;
    let extra =
        json!({"row_group_size": 32_768, "max_row_groups_per_file": 3, "target_file_size_bytes": 10_000_000});
    let (status, answer) = export_temp(&app, &s3_body(&app, ALL, extra)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["data"].get("metrics").is_none(), "metrics only when asked");
    let files = parquet_files(&app, &answer).await;
    assert!(files.len() >= 3, "{} files", files.len());
    let (last, full) = files.split_last().unwrap();
    assert!(
        full.iter().all(|(g, _)| g.len() == 3),
        "{:?}",
        files.iter().map(|f| f.0.len()).collect::<Vec<_>>()
    );
    assert!((1..=3).contains(&last.0.len()));
    let rows: Vec<Vec<String>> = files.into_iter().flat_map(|(_, r)| r).collect();
    assert_eq!(rows.len(), 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_parts_on_s3_and_single_files_on_the_file_system() {
    let backend = Backend::file();
    let Backend::File { root, .. } = &backend else { unreachable!() };
    let root = root.clone();
    let app = spawn_app_with(5_000, |c| c.destinations.file.root = Some(root.clone())).await;
    let expected = app.direct_rows(ALL).await;
    let (header, want) = expected.split_first().unwrap();

    let body = s3_body(&app, ALL, json!({"format": "Jsonl", "target_file_size_bytes": 100_000}));
    let (status, answer) = export_temp(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["export_result"]["num_row_groups"], 0);
    let keys = app.keys().await;
    assert!(keys.len() >= 3 && keys.iter().all(|k| k.ends_with(".jsonl")), "{keys:?}");
    let mut got = Vec::new();
    for key in &keys {
        let (bytes, content_type) = app.object(key).await;
        assert_eq!(content_type.as_deref(), Some("application/x-ndjson"));
        assert!(bytes.len() <= 100_000 + (1 << 20));
        got.extend(jsonl_rows(&bytes, header));
    }
    assert!(sorted(got) == sorted(want.to_vec()));

    for (format, path) in [("Parquet", "daily/all.parquet"), ("Jsonl", "daily/all.jsonl")] {
        let body = json!({"query": ALL, "storage_type": "File", "bucket": "team", "directory_path": path,
                          "mode": "single_file", "format": format});
        let (status, answer) = export_temp(&app, &body).await;
        assert_eq!(status, 200, "{answer}");
        let file = root.join("team").join(path);
        let url = format!("file://{}", std::fs::canonicalize(&file).unwrap().display());
        assert_eq!(answer["data"]["export_result"]["file_path"], url);
        let bytes = std::fs::read(&file).unwrap();
        let rows = if format == "Parquet" {
            let (groups, mut rows) = read_parquet(bytes);
            assert_eq!(answer["data"]["export_result"]["num_row_groups"], groups.len() as u64);
            rows.remove(0);
            rows
        } else {
            jsonl_rows(&bytes, header)
        };
        assert!(sorted(rows) == sorted(want.to_vec()), "{path}: exactly the query's rows");
    }
    // The file is there now: a second export to it is refused and leaves it as it was.
    let body = json!({"query": "SELECT 1 AS x", "storage_type": "File", "bucket": "team",
                      "directory_path": "daily/all.jsonl", "mode": "single_file", "format": "Jsonl"});
    let (status, answer) = export_temp(&app, &body).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        jsonl_rows(&std::fs::read(root.join("team/daily/all.jsonl")).unwrap(), header).len(),
        want.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_exports_and_a_wrong_account_key_is_refused_without_the_key() {
    let backend = Backend::azure().await;
    let Backend::Azure { container, .. } = &backend else { unreachable!() };
    let app = spawn_app(5_000).await;
    let body = |key: &str| {
        json!({"query": ALL, "storage_type": "Azure", "bucket": container, "directory_path": "exports",
               "credentials": {"access_key": AZURITE_ACCOUNT, "secret_key": key},
               "options": {"endpoint": azurite_endpoint(), "allow_http": true}, "max_row_groups_per_file": 2,
               "row_group_size": 32_768})
    };
    let (status, answer) = export_temp(&app, &body(AZURITE_KEY)).await;
    assert_eq!(status, 200, "{answer}");
    let keys = backend.keys().await;
    assert!(keys.len() >= 2, "{keys:?}");
    let mut rows = 0;
    for key in &keys {
        assert!(key.starts_with("exports/apiv2_"), "{key}");
        let (groups, file_rows) = read_parquet(backend.read(key).await.unwrap());
        assert!(groups.len() <= 2);
        rows += file_rows.len() - 1;
    }
    assert_eq!(rows, 5_000);

    // A well-formed key that is not the account's.
    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleQ==";
    let (status, answer) = export_temp(&app, &body(wrong)).await;
    assert!(status.is_client_error(), "{status}: {answer}");
    assert_eq!(answer["code"], status.as_u16());
    assert_eq!(answer["success"], false);
    let message = answer["exception"]["message"].as_str().unwrap();
    assert!(message.contains("credentials"), "{message}");
    assert!(!answer.to_string().contains(wrong), "{answer}");
    assert_eq!(backend.keys().await, keys, "nothing more written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_is_refused_with_what_to_fix_and_nothing_written() {
    let app = spawn_app(1_000).await;
    let cases = [
        (json!({"storage_type": "Dropbox"}), 343, "storage_type"),
        (json!({"format": "CSV"}), 344, "format"),
        (json!({"mode": "both"}), 345, "mode"),
        (json!({"bucket": null}), 346, "bucket is missing"),
        (json!({"query": null}), 342, "query is missing"),
        (json!({"query": "DROP TABLE demo.ecommerce.data"}), 342, ""),
        (json!({"row_group_size": -1}), 349, "row_group_size"),
        (json!({"row_group_size": 0}), 349, "row_group_size"),
        (json!({"target_file_size_bytes": 0}), 349, "target_file_size_bytes"),
        (json!({"max_row_groups_per_file": -3}), 349, "max_row_groups_per_file"),
        (json!({"credentials": {"access_key": "test"}}), 347, "credentials.secret_key"),
        (
            json!({"options": {"endpoint": "http://169.254.169.254", "allow_http": true}}),
            350,
            "internal address",
        ),
        (
            json!({"options": {"endpoint": "http://10.1.2.3:9000", "allow_http": true}}),
            350,
            "options.endpoint",
        ),
        (json!({"options": {"endpoint": env("FORWARDER_TEST_S3_ENDPOINT")}}), 350, "allow_http"),
        (
            json!({"storage_type": "File", "credentials": null, "options": null}),
            351,
            "[destinations.file] root",
        ),
        (json!({"storage_type": "File"}), 350, "leave credentials and options out"),
    ];
    for (extra, code, needle) in cases {
        let (status, answer) = export_temp(&app, &s3_body(&app, ALL, extra.clone())).await;
        assert_eq!(status, 400, "{extra}: {answer}");
        assert_eq!(
            (answer["code"].as_u64(), answer["success"].as_bool()),
            (Some(400), Some(false)),
            "{answer}"
        );
        assert_eq!(answer["exception"]["error_code"], code, "{extra}: {answer}");
        let message = answer["exception"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{extra}: {message}");
        assert!(!message.contains(SECRET), "{message}");
    }
    let (status, answer) = export_temp(&app, &s3_body(&app, "SELECT 1/0 AS x", json!({}))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["exception"]["message"].as_str().unwrap().contains("Divide by zero"), "{answer}");
    assert!(app.keys().await.is_empty(), "nothing written");
    assert_eq!(app.open_multipart_uploads().await, 0);
}

/// Waits until the bucket holds no object and no open upload.
async fn assert_emptied(app: &TestApp) {
    for _ in 0..120 {
        if app.keys().await.is_empty() && app.open_multipart_uploads().await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("left behind: {:?}", app.keys().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_leaves_nothing_behind() {
    let app = spawn_app(3_000).await;
    let body = s3_body(&app, LONG, json!({"target_file_size_bytes": 65_536, "row_group_size": 16_384}));
    let request = export_temp(&app, &body);
    let watch = async {
        // Some files are complete before the client goes.
        while app.keys().await.len() < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        (status, answer) = request => panic!("the export ended first: {status} {answer}"),
        () = watch => {}
    }
    assert_emptied(&app).await;
    assert_eq!(reqwest::get(format!("{}/healthz", app.api)).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_export_stops_at_the_request_timeout_and_says_which_setting() {
    let app = spawn_app_with(3_000, |c| c.export_temp.request_timeout = Duration::from_secs(3)).await;
    let body = s3_body(&app, LONG, json!({"target_file_size_bytes": 65_536}));
    let (status, answer) = export_temp(&app, &body).await;
    assert_eq!(status, 408, "{answer}");
    assert_eq!(answer["exception"]["error_code"], 353);
    assert!(
        answer["exception"]["message"].as_str().unwrap().contains("export_temp.request_timeout"),
        "{answer}"
    );
    assert_emptied(&app).await;
}
