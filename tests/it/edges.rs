//! Part files at the edges: an empty result, values hostile to CSV, a row larger than the
//! size limit.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_result_completes_with_no_part() {
    let app = spawn_app(1_000).await;
    let id = app
        .submit_export(
            "SELECT * FROM demo.ecommerce.data WHERE statusCode < 0",
            json!({"format": "gzip", "notification.email": "ops@example.com"}),
        )
        .await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");
    assert_eq!((job["eventsSent"].as_u64(), job["extra"]["percentComplete"].as_u64()), (Some(0), Some(100)));
    assert_eq!(job["extra"]["paths"], json!([]));
    assert!(app.keys().await.is_empty(), "an empty part is never uploaded");
    let email = email_about(&id, "COMPLETED").await;
    assert!(email.lines().any(|l| l.starts_with("Rows:") && l.trim_end().ends_with(" 0 rows")), "{email}");
}

/// Values a CSV writer gets wrong, and one row far over the 10,000-byte part limit.
fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "plain",
        "comma, inside",
        "quote \" inside",
        "\"starts with a quote",
        "ends with a quote\"",
        "new\nline",
        "crlf\r\nline",
        "unicode: ünïcödé 日本語 🚀",
        "",
        "  leading and trailing  ",
        "tab\there",
        "semi;colon",
        "back\\slash",
        "'single'",
        "=1+1",
    ]
    .map(String::from)
    .to_vec();
    v.push(format!("huge:{}", "é,\"\n".repeat(5_000)));
    v.extend((0..40).map(|i| format!("after the huge row #{i}, \"quoted\"\n{}", "x".repeat(100))));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_round_trip_and_a_huge_row_gets_a_part_of_its_own() {
    let values = hostile_values();
    let app = spawn_app_with(10, |config| {
        // A second table, in NDJSON, beside the demo one.
        let catalog = config.catalog.clone().unwrap();
        let file = catalog.parent().unwrap().join("hostile.json");
        let lines: Vec<String> =
            values.iter().enumerate().map(|(i, t)| json!({"id": i as i64, "text": t}).to_string()).collect();
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let entry = format!(
            "\n[[tables]]\nname = \"t.hostile\"\nlocation = {:?}\nformat = \"json\"\n",
            file.display().to_string()
        );
        std::fs::write(&catalog, std::fs::read_to_string(&catalog).unwrap() + &entry).unwrap();
    })
    .await;
    // CSV as Devo writes it, and JSON Lines in a zstd frame: the same values come back.
    for (file_format, format) in [("csv", "plain"), ("csv", "gzip"), ("jsonl", "zstd")] {
        let params = json!({"file.format": file_format, "format": format, "retention.size": 0.01});
        let id = app.submit_export("SELECT id, text FROM t.hostile ORDER BY id", params).await;
        app.worker.try_run_next_job().await.unwrap().unwrap();
        let job = app.job(&id).await;
        assert_eq!(job["status"], "COMPLETED", "{job:#}");
        let parts: Vec<Value> = job["extra"]["parts"].as_array().unwrap().clone();
        let mut rows = Vec::new();
        for p in &parts {
            let (bytes, _) = app.object(p["key"].as_str().unwrap()).await;
            assert!(bytes.len() <= 10_000 + (1 << 20));
            let plain = match format {
                "gzip" => gunzip(&bytes),
                "zstd" => zstd::decode_all(&bytes[..]).unwrap(),
                _ => bytes,
            };
            let records: Vec<Vec<String>> = if file_format == "csv" {
                let mut records = parse_csv(&plain);
                assert_eq!(records.remove(0), vec!["id", "text"], "every part starts with the header");
                records
            } else {
                String::from_utf8(plain)
                    .unwrap()
                    .lines()
                    .map(|line| {
                        let v: Value = serde_json::from_str(line).unwrap();
                        vec![
                            v["id"].as_i64().expect("id is a number").to_string(),
                            v["text"].as_str().unwrap().to_string(),
                        ]
                    })
                    .collect()
            };
            assert!(!records.is_empty(), "no part is empty");
            if records.iter().any(|r| r[1].starts_with("huge:")) {
                assert_eq!(records.len(), 1, "the huge row is alone in its part");
            }
            rows.extend(records);
        }
        let want: Vec<Vec<String>> =
            values.iter().enumerate().map(|(i, t)| vec![i.to_string(), t.clone()]).collect();
        assert!(rows == want, "{format}: every value comes back exactly, in order");
        assert!(parts.len() >= 3, "{format}: rows before, the huge row, rows after: {parts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_memory_limit_fails_the_job_not_the_worker() {
    let app = spawn_app_with(60_000, |c| c.worker.query_memory_mb = 1).await;
    // One group holding every uri: nothing to spill, so it must stop at the limit.
    let id = app
        .submit_export("SELECT array_agg(uri) AS uris FROM demo.ecommerce.data", json!({"format": "gzip"}))
        .await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "FAILED", "{job:#}");
    assert!(job["error"][0].as_str().unwrap().contains("more memory than one query may use"), "{job:#}");
    assert_eq!(app.open_multipart_uploads().await, 0);
    // The worker goes on with the next job.
    let next = app.submit_export(crate::export::QUERY, json!({"format": "gzip"})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    assert_eq!(app.job(&next).await["status"], "COMPLETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_object_carries_encryption_and_storage_class() {
    // ~8 MB of CSV as one object: a multipart upload of two 5 MiB parts.
    let app = spawn_app(30_000).await;
    let params = json!({"format": "plain", "multiplefile": false, "aws.sse": "AES256", "aws.storageclass": "STANDARD_IA",
                        "notification.email": "ops@example.com"});
    let id = app.submit_export(crate::export::QUERY, params).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let job = crate::export::check_completed_export(&app, &id, "csv", None, None).await;
    assert_eq!(job["extra"]["parts"].as_array().unwrap().len(), 1, "one object: {job:#}");
    assert!(job["extra"]["parts"][0]["bytes"].as_u64().unwrap() > 5 << 20, "more than one upload part");
    let head =
        app.s3.head_object().bucket(&app.bucket).key(format!("apiv2_{id}_001.csv")).send().await.unwrap();
    assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("AES256"));
    assert_eq!(head.storage_class().map(|s| s.as_str()), Some("STANDARD_IA"));
}
