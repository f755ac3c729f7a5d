//! Hostile input over HTTP: every malformed request gets a clear 4xx with a JSON message,
//! never a 5xx, a crash or a hang, and nothing is queued.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_clear_4xx_and_queue_nothing() {
    let app = spawn_app(100).await;
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let good = |patch: Value| {
        let mut body = json!({"query": "SELECT * FROM demo.ecommerce.data", "from": from, "to": to,
                              "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}});
        for (k, v) in patch.as_object().unwrap() {
            if let Some(param) = k.strip_prefix("param:") {
                body["destination"]["params"][param] = v.clone();
            } else {
                body[k] = v.clone();
            }
        }
        body.to_string().into_bytes()
    };
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", vec![]),
        ("not JSON", b"query=SELECT 1".to_vec()),
        ("invalid UTF-8", b"{\"query\": \"SELECT \xff\xfe\"}".to_vec()),
        ("a JSON array", b"[1,2,3]".to_vec()),
        ("deeply nested JSON", deep.into_bytes()),
        ("body over 1 MB", format!("{{\"query\": \"{}\"}}", "x".repeat(2 << 20)).into_bytes()),
        ("query is a number", good(json!({"query": 5}))),
        ("query is empty", good(json!({"query": "  "}))),
        ("query is DDL", good(json!({"query": "DROP TABLE demo.ecommerce.data"}))),
        ("query is DML", good(json!({"query": "INSERT INTO demo.ecommerce.data VALUES (1)"}))),
        ("COPY", good(json!({"query": "COPY (SELECT 1) TO '/tmp/x.csv'"}))),
        (
            "CREATE EXTERNAL TABLE",
            good(json!({"query": "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'"})),
        ),
        ("SET", good(json!({"query": "SET datafusion.execution.batch_size = 1"}))),
        ("a local path as a table", good(json!({"query": "SELECT * FROM '/etc/passwd'"}))),
        (
            "a URL as a table",
            good(json!({"query": "SELECT * FROM 'http://169.254.169.254/latest/meta-data'"})),
        ),
        ("an unknown table", good(json!({"query": "SELECT * FROM nope"}))),
        ("two statements", good(json!({"query": "SELECT 1; DROP TABLE demo.ecommerce.data"}))),
        ("from is text", good(json!({"from": "yesterday"}))),
        ("from is huge", good(json!({"from": 1e300}))),
        ("from is negative", good(json!({"from": -5}))),
        ("from after to", good(json!({"from": to, "to": from}))),
        ("limit is negative", good(json!({"limit": -1}))),
        ("limit is huge", good(json!({"limit": 1e30}))),
        ("limit is text", good(json!({"limit": "ten"}))),
        ("destination is a list", good(json!({"destination": []}))),
        ("unknown destination type", good(json!({"destination": {"type": "ftp", "params": {}}}))),
        ("gcs without a bucket", good(json!({"destination": {"type": "gcs", "params": {}}}))),
        (
            "file on a server without a file root",
            good(json!({"destination": {"type": "file", "params": {}}})),
        ),
        (
            "azure key and SAS both",
            good(
                json!({"destination": {"type": "azure", "params": {"azure.account": "acct1", "azure.container": "c01", "azure.accesskey": "a2V5", "azure.sastoken": "sv=1"}}}),
            ),
        ),
        (
            "gcs endpoint at the metadata service",
            good(
                json!({"destination": {"type": "gcs", "params": {"gcs.bucket": "b01", "gcs.credentials": "{\"type\": \"service_account\"}", "gcs.endpoint": "http://169.254.169.254"}}}),
            ),
        ),
        (
            "azure endpoint on a private network",
            good(
                json!({"destination": {"type": "azure", "params": {"azure.account": "acct1", "azure.container": "c01", "azure.accesskey": "a2V5", "azure.endpoint": "http://10.0.0.1:10000"}}}),
            ),
        ),
        ("unknown format", good(json!({"param:format": "rar"}))),
        ("password with gzip", good(json!({"param:file.password": "x"}))),
        ("retention.size is text", good(json!({"param:retention.size": "big"}))),
        ("retention.size over the bound", good(json!({"param:retention.size": 1e9}))),
        ("retention.time negative", good(json!({"param:retention.time": -1}))),
        ("bad email", good(json!({"param:notification.email": "not-an-address"}))),
        ("header injection in email", good(json!({"param:notification.email": "a@b.com\r\nBcc: c@d.com"}))),
        ("endpoint not a URL", good(json!({"param:aws.endpoint": "file:///etc/passwd"}))),
        (
            "credentials in the endpoint",
            good(json!({"param:aws.endpoint": "http://AKIAEXAMPLE:s3cret@s3.example.com"})),
        ),
        ("endpoint at the metadata service", good(json!({"param:aws.endpoint": "http://169.254.169.254"}))),
        ("endpoint on a private network", good(json!({"param:aws.endpoint": "http://10.0.0.1:9000"}))),
        (
            "endpoint at an IPv6 link-local address",
            good(json!({"param:aws.endpoint": "http://[fe80::1]:9000"})),
        ),
        ("unknown param", good(json!({"param:aws.evil": "x"}))),
        ("multiplefile is text", good(json!({"param:multiplefile": "maybe"}))),
        (
            "no bucket, and no default bucket",
            good(json!({"destination": {"type": "s3", "params": {"format": "gzip"}}})),
        ),
        (
            "endpoint at a NAT64 private address",
            good(json!({"param:aws.endpoint": "http://[64:ff9b::a00:5]:9000"})),
        ),
        ("unknown server-side encryption", good(json!({"param:aws.sse": "rot13"}))),
        ("KMS key without aws:kms", good(json!({"param:aws.kmskeyid": "alias/mine"}))),
        ("unknown storage class", good(json!({"param:aws.storageclass": "COLD"}))),
        ("region with spaces", good(json!({"param:aws.region": "eu west"}))),
        ("continuous over no time column", good(json!({"query": "SELECT 1 AS one", "to": null}))),
    ];
    let url = format!("{}/search/query", app.api);
    // A connection per request: the server answers an oversized body before reading it all
    // and closes that connection, which a pooled client could otherwise pick up again.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for (what, body) in cases {
        let request =
            http.post(&url).bearer_auth(&app.token).header("content-type", "application/json").body(body);
        let res = tokio::time::timeout(Duration::from_secs(10), request.send())
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"))
            .unwrap();
        let status = res.status();
        let answer: Value = res.json().await.unwrap_or_else(|e| panic!("{what}: answer is not JSON: {e}"));
        assert!(status.is_client_error(), "{what}: {status} {answer}");
        let msg = answer["msg"].as_str().unwrap_or_else(|| panic!("{what}: no msg: {answer}"));
        assert!(msg.len() > 10 && answer["status"].as_u64().is_some(), "{what}: {answer}");
        // Where a case could be refused for an earlier reason than the one it is about, the
        // message shows it was the right one.
        let says = match what {
            "azure key and SAS both" => "exactly one of azure.accesskey",
            "azure endpoint on a private network" => {
                "azure.endpoint 10.0.0.1 resolves to 10.0.0.1, an internal address"
            }
            "gcs endpoint at the metadata service" => {
                "gcs.endpoint 169.254.169.254 resolves to 169.254.169.254, an internal"
            }
            _ => "",
        };
        assert!(msg.contains(says), "{what}: {msg}");
        println!("{what:<32} {status} {}", &msg[..msg.len().min(110)]);
    }
    // An oversized body is not read to its end, so its connection closes, and says so.
    let big = format!("{{\"query\": \"{}\"}}", "x".repeat(2 << 20));
    let res = http.post(&url).bearer_auth(&app.token).body(big).send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.headers().get("connection").map(|v| v.to_str().unwrap())),
        (413, Some("close"))
    );
    // Odd paths and methods: a 4xx in Devo's shape, saying what is wrong.
    for path in [
        "/search/job/..%2F..%2Fetc%2Fpasswd",
        "/search/job/%00",
        "/search/job/stop/not-a-uuid",
        "/search/jobs?status=EXPLODED",
        "/search/nothing-here",
        "/search/query",
    ] {
        let (status, answer) = app.get(path).await;
        assert!(
            status.is_client_error() && answer["msg"].as_str().is_some_and(|m| m.len() > 10),
            "{path}: {status} {answer}"
        );
    }
    let (status, answer) = app.get("/search/query").await;
    assert_eq!(status, 405, "{answer}");
    assert!(answer["msg"].as_str().unwrap().contains("use POST"), "{answer}");
    let (_, list) = app.get("/search/jobs").await;
    assert_eq!(list["object"], json!([]), "nothing was queued");
    assert_eq!(app.get("/healthz").await.0, 200, "the server is still up");
}

// One section per way a caller or a job could take the service down (issue 10).
mod http;
mod jobs;
mod memory;
mod queries;
mod uploads;
