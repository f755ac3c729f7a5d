//! Async exports with download, over real HTTP: a query registered with `POST /v1/queries`,
//! exported by the real worker into one file, polled, downloaded (whole and by ranges, read
//! back by the readers users use), deleted, expired, refused past the quota and
//! `export.max_rows`, kept apart between tenants, and kept across a restart.

use std::time::Duration;

use forwarder::api::exports_files::sweep;
use forwarder::config::ExportConfig;
use forwarder::query::demo;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;
use crate::formats::as_csv_field;
use crate::parquet::read_parquet;

const QUERY: &str = "SELECT * FROM demo.ecommerce.data WHERE statusCode >= 300";

fn export_dir(app: &TestApp) -> std::path::PathBuf {
    ExportConfig::default().dir(&app.dir.join("data"))
}

/// Registers `QUERY` over the whole demo table; its executionId.
async fn register(app: &TestApp) -> String {
    register_query(app, QUERY).await
}

/// Registers `query` over the whole demo table; its executionId.
async fn register_query(app: &TestApp, query: &str) -> String {
    let (from, to) = demo::time_range(app.rows);
    let r = app
        .http
        .post(format!("{}/v1/queries", app.api))
        .json(&json!({"query": query, "from": from, "to": to}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["executionId"].as_str().unwrap().to_string()
}

async fn post(app: &TestApp, path: &str, body: &str) -> (StatusCode, Value) {
    let r = app.http.post(format!("{}{path}", app.api)).body(body.to_string()).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Asks for an export of `query_id` with `body`; its exportId.
async fn export(app: &TestApp, query_id: &str, body: Value) -> String {
    let (status, answer) =
        post(app, &format!("/v1/queries/{query_id}/export/async"), &body.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        (answer["executionId"].as_str(), answer["status"].as_str()),
        (Some(query_id), Some("PENDING"))
    );
    answer["exportId"].as_str().unwrap().to_string()
}

async fn progress(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/queries/exports/{id}/progress")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The whole file, after checking the headers a download carries.
async fn download(app: &TestApp, id: &str, content_type: &str, ext: &str) -> Vec<u8> {
    let r = app.http.get(format!("{}/v1/queries/exports/{id}/download", app.api)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], content_type);
    assert_eq!(h["content-disposition"], format!("attachment; filename=\"export_{id}.{ext}\"").as_str());
    let bytes = r.bytes().await.unwrap().to_vec();
    assert_eq!(h["content-length"], bytes.len().to_string().as_str());
    bytes
}

/// The query's rows as the API's CSV would have them, without the header.
async fn expected(app: &TestApp) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rows = app.direct_rows(QUERY).await;
    let header = rows.remove(0);
    assert!(rows.len() > 100, "the query has rows to compare");
    (header, rows)
}

/// JSON objects (from JSON Lines or pyarrow) as CSV records in the header's column order.
fn as_records(header: &[String], objects: &[Value]) -> Vec<Vec<String>> {
    objects.iter().map(|o| header.iter().map(|c| as_csv_field(c, &o[c])).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_and_without_header_and_gzipped_holds_exactly_the_querys_rows() {
    let app = spawn_app(3_000).await;
    let query = register(&app).await;
    let (header, rows) = expected(&app).await;
    let gzipped =
        export(&app, &query, json!({"format": "CSV", "includeHeader": true, "compress": true})).await;
    let headless =
        export(&app, &query, json!({"format": "csv", "includeHeader": false, "compress": false})).await;
    for _ in 0..2 {
        app.worker.try_run_next_job().await.unwrap().unwrap();
    }
    let file = gunzip(&download(&app, &gzipped, "application/gzip", "csv.gz").await);
    let got = parse_csv(&file);
    assert_eq!(got[0], header);
    assert_eq!(got[1..], rows[..]);
    let plain = download(&app, &headless, "text/csv", "csv").await;
    assert_eq!(parse_csv(&plain), rows, "no header line, then every row");
    let done = progress(&app, &gzipped).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(
        (done["totalRows"].as_u64(), done["rowsProcessed"].as_u64()),
        (Some(rows.len() as u64), Some(rows.len() as u64))
    );
    assert_eq!(done["percentComplete"], 100);
    assert!(done["startedAt"].as_str().unwrap().ends_with('Z'), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_and_parquet_hold_exactly_the_querys_rows() {
    let app = spawn_app(3_000).await;
    let query = register(&app).await;
    let (header, rows) = expected(&app).await;
    let json_id = export(&app, &query, json!({"format": "JSON", "compress": true})).await;
    let parquet_id = export(&app, &query, json!({"format": "PARQUET", "compress": true})).await;
    for _ in 0..2 {
        app.worker.try_run_next_job().await.unwrap().unwrap();
    }
    let lines = gunzip(&download(&app, &json_id, "application/gzip", "jsonl.gz").await);
    let objects: Vec<Value> =
        std::str::from_utf8(&lines).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(as_records(&header, &objects), rows);

    let bytes = download(&app, &parquet_id, "application/vnd.apache.parquet", "parquet").await;
    // pyarrow and DuckDB, as parquet.rs reads the parts of bucket exports.
    let (_, objects) = read_parquet("export.parquet", &bytes);
    assert_eq!(as_records(&header, &objects), rows, "pyarrow reads exactly the query's rows");
}

/// A client polls until COMPLETED and then downloads: a result with no rows is a file too, its
/// header alone or a Parquet file of the query's columns and no rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_with_no_rows_downloads_as_a_file_with_its_columns() {
    let app = spawn_app(1_000).await;
    let query =
        register_query(&app, "SELECT uri, statusCode FROM demo.ecommerce.data WHERE statusCode < 0").await;
    let csv = export(&app, &query, json!({"format": "CSV", "includeHeader": true, "compress": true})).await;
    let parquet = export(&app, &query, json!({"format": "PARQUET"})).await;
    let jsonl = export(&app, &query, json!({"format": "JSON", "compress": false})).await;
    for _ in 0..3 {
        app.worker.try_run_next_job().await.unwrap().unwrap();
    }
    let done = progress(&app, &csv).await;
    assert_eq!((done["status"].as_str(), done["totalRows"].as_u64()), (Some("COMPLETED"), Some(0)), "{done}");
    let gzipped = download(&app, &csv, "application/gzip", "csv.gz").await;
    assert_eq!(done["fileSize"].as_u64(), Some(gzipped.len() as u64), "{done}");
    let header = vec!["uri".to_string(), "statusCode".to_string()];
    assert_eq!(parse_csv(&gunzip(&gzipped)), vec![header], "the header alone");

    let bytes = download(&app, &parquet, "application/vnd.apache.parquet", "parquet").await;
    let (summary, rows) = read_parquet("empty.parquet", &bytes);
    assert!(rows.is_empty(), "{rows:?}");
    assert_eq!(
        summary["types"],
        json!({"uri": "string", "statusCode": "int64"}),
        "pyarrow reads its columns: {summary}"
    );
    let lines = download(&app, &jsonl, "application/x-ndjson", "jsonl").await;
    assert!(lines.is_empty(), "no line: {:?}", String::from_utf8_lossy(&lines));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_moves_from_pending_through_in_progress_to_completed() {
    let app = spawn_app_with(100_000, |c| c.export.chunk_size = 1_000).await;
    let query = register(&app).await;
    let id = export(&app, &query, json!({"format": "CSV", "compress": true})).await;
    let first = progress(&app, &id).await;
    assert_eq!((first["status"].as_str(), first["rowsProcessed"].as_u64()), (Some("PENDING"), Some(0)));
    assert_eq!(first["totalRows"], Value::Null, "not counted ahead");
    let worker = app.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });
    let mut seen = vec![];
    let mut last_rows = 0;
    let last = loop {
        let p = progress(&app, &id).await;
        let rows = p["rowsProcessed"].as_u64().unwrap();
        assert!(rows >= last_rows, "rowsProcessed never goes back: {p}");
        last_rows = rows;
        if p["status"] == "IN_PROGRESS" && rows > 0 {
            seen.push(rows);
        }
        if p["status"] != "PENDING" && p["status"] != "IN_PROGRESS" {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    run.await.unwrap().unwrap();
    assert_eq!(last["status"], "COMPLETED", "{last}");
    let total = last["totalRows"].as_u64().unwrap();
    assert_eq!(last["rowsProcessed"].as_u64(), Some(total));
    assert_eq!(total as usize, app.direct_rows(QUERY).await.len() - 1);
    assert!(seen.iter().any(|&r| r < total), "seen IN_PROGRESS part-way ({seen:?} of {total})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_download_resumes_with_a_range_and_past_the_end_is_416() {
    let app = spawn_app(2_000).await;
    let query = register(&app).await;
    let id = export(&app, &query, json!({"format": "CSV", "compress": true})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let whole = download(&app, &id, "application/gzip", "csv.gz").await;
    let url = format!("{}/v1/queries/exports/{id}/download", app.api);
    let range = |r: String| app.http.get(&url).header("range", r).send();
    let cut = whole.len() / 3;
    let head = range(format!("bytes=0-{}", cut - 1)).await.unwrap();
    let modified = head.headers().get("last-modified").expect("Last-Modified").to_str().unwrap().to_string();
    assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.headers()["content-range"], format!("bytes 0-{}/{}", cut - 1, whole.len()).as_str());
    let mut joined = head.bytes().await.unwrap().to_vec();
    let tail = range(format!("bytes={cut}-")).await.unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    joined.extend_from_slice(&tail.bytes().await.unwrap());
    assert_eq!(joined, whole, "the two ranges make the whole file");
    let past = range(format!("bytes={}-", whole.len() + 10)).await.unwrap();
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.headers()["content-range"], format!("bytes */{}", whole.len()).as_str());
    // A last byte past the end is the end.
    let clamped = range("bytes=0-99999999999".into()).await.unwrap();
    assert_eq!(clamped.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(clamped.bytes().await.unwrap(), whole);
    // What a server cannot use it ignores (RFC 9110 §14.2): the whole file, 200.
    for ignored in ["bytes=5-2", "bytes=0-1,5-9", "items=0-1", "bytes=0-99999999999999999999999"] {
        let r = range(ignored.into()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{ignored}");
        assert_eq!(r.bytes().await.unwrap(), whole, "{ignored}");
    }
    // A resumed download of another version of the file starts again from the first byte.
    let if_range =
        |date: &str| app.http.get(&url).header("range", "bytes=10-").header("if-range", date).send();
    let another = if_range("Thu, 01 Jan 2026 00:00:00 GMT").await.unwrap();
    assert_eq!(another.status(), StatusCode::OK);
    let same = if_range(&modified).await.unwrap();
    assert_eq!(same.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(same.bytes().await.unwrap(), whole[10..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_file_and_the_export() {
    let app = spawn_app(1_000).await;
    let query = register(&app).await;
    let id = export(&app, &query, json!({"format": "CSV"})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    assert!(export_dir(&app).join(&id).is_dir());
    // Listed among the caller's jobs of type download, and only there.
    let listed = |t: &'static str| {
        let app = &app;
        async move {
            let (status, list) = app.get(&format!("/search/jobs?type={t}")).await;
            assert_eq!(status, 200, "{list}");
            list["object"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("download").await, vec![id.clone()]);
    assert!(listed("s3").await.is_empty());
    assert_eq!(app.get("/search/jobs/download").await.1["object"][0]["id"], id.as_str());
    assert!(listed("kafka").await.is_empty(), "a type Devo has and this server not");
    let r = app.http.delete(format!("{}/v1/queries/exports/{id}", app.api)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!export_dir(&app).join(&id).exists(), "the file is gone from disk");
    for path in [format!("/v1/queries/exports/{id}/download"), format!("/v1/queries/exports/{id}/progress")] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["msg"].as_str().unwrap().contains("deleted"), "{body}");
    }
    let again = app.http.delete(format!("{}/v1/queries/exports/{id}", app.api)).send().await.unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfetched_file_is_removed_after_the_ttl() {
    let app = spawn_app(1_000).await;
    let query = register(&app).await;
    let id = export(&app, &query, json!({"format": "JSON"})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let ttl = ExportConfig::default().ttl;
    let now = forwarder::job::now_ms();
    let early =
        sweep(app.store.as_ref(), &export_dir(&app), ttl, now + ttl.as_millis() as i64 - 60_000).await;
    assert_eq!(early.unwrap().expired, 0, "kept until the ttl passes");
    assert_eq!(progress(&app, &id).await["status"], "COMPLETED");
    let late = sweep(app.store.as_ref(), &export_dir(&app), ttl, now + ttl.as_millis() as i64 + 60_000).await;
    assert_eq!(late.unwrap().expired, 1);
    assert!(!export_dir(&app).join(&id).exists());
    let (status, body) = app.get(&format!("/v1/queries/exports/{id}/download")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("export.ttl"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_disk_quota_new_exports_get_507_with_a_message() {
    let app = spawn_app_with(20_000, |c| c.export.disk_quota_mb = 1).await;
    let query = register(&app).await;
    let id = export(&app, &query, json!({"format": "CSV"})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let (status, body) = post(&app, &format!("/v1/queries/{query}/export/async"), "{}").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("export.disk_quota_mb"), "{body}");
    // Deleting the file makes room again.
    app.http.delete(format!("{}/v1/queries/exports/{id}", app.api)).send().await.unwrap();
    let (status, body) = post(&app, &format!("/v1/queries/{query}/export/async"), "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// Exports asked for at once all pass the quota when they are queued: the worker holds them to
/// it while they write, so a caller cannot fill the disk with a burst of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_asked_for_at_once_are_held_to_the_disk_quota_while_they_write() {
    // About 3 MB of CSV per export, under a 5 MB quota.
    let app = spawn_app_with(11_000, |c| c.export.disk_quota_mb = 5).await;
    let query = register_query(&app, "SELECT * FROM demo.ecommerce.data").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(export(&app, &query, json!({"format": "CSV", "compress": false})).await);
    }
    for _ in 0..4 {
        app.worker.try_run_next_job().await.unwrap().unwrap();
    }
    let mut completed = 0;
    for id in &ids {
        let done = progress(&app, id).await;
        match done["status"].as_str().unwrap() {
            "COMPLETED" => completed += 1,
            "FAILED" => {
                let error = done["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains("past the 5.0 MB this server keeps (export.disk_quota_mb)"),
                    "says why and what to do: {done}"
                );
            }
            other => panic!("{id}: {other}: {done}"),
        }
    }
    // The first measures nothing, the second 3 MB; the third finds 6 MB, past the quota.
    assert_eq!(completed, 2, "two fit before the quota was passed");
    sweep(app.store.as_ref(), &export_dir(&app), Duration::from_secs(3600), forwarder::job::now_ms())
        .await
        .unwrap();
    let used = forwarder::upload::used_bytes(&export_dir(&app)).await.unwrap();
    assert!(used < 7_000_000, "the failed exports left no file: {used} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_past_export_max_rows_fails_the_export_and_leaves_no_file() {
    let app = spawn_app_with(2_000, |c| c.export.max_rows = 100).await;
    let query = register(&app).await;
    let id = export(&app, &query, json!({"format": "CSV"})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let failed = progress(&app, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("export.max_rows"), "{failed}");
    let (status, body) = app.get(&format!("/v1/queries/exports/{id}/download")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("export.max_rows"), "{body}");
    let left = std::fs::read_dir(export_dir(&app).join(&id)).map_or(0, |d| d.count());
    assert_eq!(left, 0, "no file, not even a partial one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_cannot_see_download_or_delete_an_export() {
    let app = spawn_app(1_000).await;
    let query = register(&app).await;
    let id = export(&app, &query, json!({"format": "CSV"})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let (ok, token) = auth_cli(&app, &["create-token", "--domain", "acme"]);
    assert!(ok);
    let acme = |method: reqwest::Method, path: String| {
        reqwest::Client::new().request(method, format!("{}{path}", app.api)).bearer_auth(token.trim()).send()
    };
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/queries/exports/{id}/progress")),
        (reqwest::Method::GET, format!("/v1/queries/exports/{id}/download")),
        (reqwest::Method::DELETE, format!("/v1/queries/exports/{id}")),
        (reqwest::Method::POST, format!("/v1/queries/{query}/export/async")),
    ] {
        assert_eq!(acme(method, path.clone()).await.unwrap().status(), 404, "{path}");
    }
    assert_eq!(progress(&app, &id).await["status"], "COMPLETED", "still there for its owner");

    // X-Tenant-ID narrows the caller's domain ("default") and never widens it.
    let as_tenant = |tenant: &str, path: String| {
        app.http.get(format!("{}{path}", app.api)).header("x-tenant-id", tenant).send()
    };
    let wider = as_tenant("acme", format!("/v1/queries/exports/{id}/progress")).await.unwrap();
    assert_eq!(wider.status(), 403);
    assert!(wider.text().await.unwrap().contains("may only narrow"));
    let narrower = as_tenant("default/team", format!("/v1/queries/exports/{id}/progress")).await.unwrap();
    assert_eq!(narrower.status(), 404, "a tenant sees only its own exports");
    assert_eq!(
        as_tenant("default", format!("/v1/queries/exports/{id}/progress")).await.unwrap().status(),
        200
    );

    // A narrowed tenant's query and export are its own: the whole domain does not see them.
    let team =
        |path: String| app.http.post(format!("{}{path}", app.api)).header("x-tenant-id", "default/team");
    let r = team("/v1/queries".into()).json(&json!({"query": QUERY, "to": "2030-01-01T00:00:00Z"}));
    let team_query: Value = r.send().await.unwrap().json().await.unwrap();
    let team_query = team_query["executionId"].as_str().unwrap();
    let (status, _) = post(&app, &format!("/v1/queries/{team_query}/export/async"), "{}").await;
    assert_eq!(status, 404, "the domain without the header does not see the tenant's query");
    let r = team(format!("/v1/queries/{team_query}/export/async")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let team_export = r.json::<Value>().await.unwrap()["exportId"].as_str().unwrap().to_string();
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let seen =
        as_tenant("default/team", format!("/v1/queries/exports/{team_export}/progress")).await.unwrap();
    assert_eq!(seen.json::<Value>().await.unwrap()["status"], "COMPLETED");
    let (status, _) = app.get(&format!("/v1/queries/exports/{team_export}/progress")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_survives_a_restart_and_shows_in_the_metrics() {
    let app = spawn_app(1_000).await;
    let query = register(&app).await;
    let queued = export(&app, &query, json!({"format": "CSV", "compress": true})).await;
    let app = app.restart().await;
    assert_eq!(progress(&app, &queued).await["status"], "PENDING");
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let before = download(&app, &queued, "application/gzip", "csv.gz").await;
    // The registered query is kept too: it can be exported again after the restart.
    let again = export(&app, &query, json!({"format": "CSV", "compress": true})).await;
    let app = app.restart().await;
    assert_eq!(download(&app, &queued, "application/gzip", "csv.gz").await, before);
    app.worker.try_run_next_job().await.unwrap().unwrap();
    assert_eq!(gunzip(&download(&app, &again, "application/gzip", "csv.gz").await), gunzip(&before));
    let text = app.http.get(format!("{}/metrics", app.api)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"forwarder_jobs{status="COMPLETED"} 2"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_that_says_what_to_fix() {
    let app = spawn_app(1_000).await;
    let query = register(&app).await;
    let start = format!("/v1/queries/{query}/export/async");
    let unknown = uuid::Uuid::new_v4();
    let cases: Vec<(String, &str, u16, &str)> = vec![
        (start.clone(), r#"{"format":"XML"}"#, 400, "CSV, JSON, PARQUET"),
        (start.clone(), r#"{"format":"CSV""#, 400, "not JSON"),
        (start.clone(), r#"{"compress":"yes"}"#, 400, "true or false"),
        (start.clone(), r#"{"formats":"CSV"}"#, 400, "unknown field"),
        (format!("/v1/queries/{unknown}/export/async"), "{}", 404, "POST /v1/queries"),
        ("/v1/queries/not-a-uuid/export/async".into(), "{}", 400, "not a query id"),
        ("/v1/queries".into(), r#"{"query":"SELEC nothing"}"#, 400, ""),
        ("/v1/queries".into(), r#"{"query":"SELECT 1","from":5,"to":1}"#, 400, "before"),
        ("/v1/queries".into(), r#"{"from":1}"#, 400, "\"query\" is missing"),
        ("/v1/queries".into(), "not json", 400, "not JSON"),
    ];
    for (path, body, status, needle) in cases {
        let (got, answer) = post(&app, &path, body).await;
        assert_eq!(got.as_u16(), status, "{path} {body}: {answer}");
        let msg = answer["msg"].as_str().unwrap();
        assert!(!msg.is_empty() && msg.contains(needle), "{path} {body}: {answer}");
    }
    for path in ["/v1/queries/exports/x1/progress", "/v1/queries/exports/x1/download"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["msg"].as_str().unwrap().contains("not an export id"), "{body}");
    }
    let r = app.http.delete(format!("{}/v1/queries/exports/x1", app.api)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let (status, body) = app.get(&format!("/v1/queries/exports/{unknown}/progress")).await;
    assert_eq!(status, 404, "{body}");
    let r = app.http.put(format!("{}/v1/queries/exports/{unknown}", app.api)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.text().await.unwrap().contains("DELETE"));
    // Nothing was queued by any of them.
    assert!(app.worker.try_run_next_job().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_shared_postgresql_store_the_export_runs_the_same() {
    let url = fresh_postgres_database().await;
    let app =
        spawn_app_with(1_000, |c| c.store.url = Some(forwarder::secret::Secret::new(url.clone()))).await;
    let query = register(&app).await;
    let id = export(&app, &query, json!({"format": "CSV", "includeHeader": false})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let (_, rows) = expected(&app).await;
    assert_eq!(parse_csv(&download(&app, &id, "text/csv", "csv").await), rows);
    let r = app.http.delete(format!("{}/v1/queries/exports/{id}", app.api)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.get(&format!("/v1/queries/exports/{id}/progress")).await.0, 404);
}
