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
    // Each case: what it is, the request, and what its refusal must say (so that a case
    // refused for an earlier reason than the one it is about fails).
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", vec![], "the body must be a JSON object with a \"query\" field"),
        ("not JSON", b"query=SELECT 1".to_vec(), "the body must be a JSON object with a \"query\" field"),
        (
            "invalid UTF-8",
            b"{\"query\": \"SELECT \xff\xfe\"}".to_vec(),
            "the body must be a JSON object with a \"query\" field",
        ),
        ("a JSON array", b"[1,2,3]".to_vec(), "the body must be a JSON object with a \"query\" field"),
        ("deeply nested JSON", deep.into_bytes(), "recursion limit exceeded"),
        (
            "body over 1 MB",
            format!("{{\"query\": \"{}\"}}", "x".repeat(2 << 20)).into_bytes(),
            "the request body is over 1048576 bytes",
        ),
        ("query is a number", good(json!({"query": 5})), "\"query\" must be a string"),
        ("query is empty", good(json!({"query": "  "})), "\"query\" is empty"),
        (
            "query is DDL",
            good(json!({"query": "DROP TABLE demo.ecommerce.data"})),
            "only SELECT queries run here, not DROP TABLE",
        ),
        (
            "query is DML",
            good(json!({"query": "INSERT INTO demo.ecommerce.data VALUES (1)"})),
            "only SELECT queries run here, not INSERT INTO",
        ),
        (
            "COPY",
            good(json!({"query": "COPY (SELECT 1) TO '/tmp/x.csv'"})),
            "only SELECT queries run here, not COPY",
        ),
        (
            "CREATE EXTERNAL TABLE",
            good(json!({"query": "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'"})),
            "only SELECT queries run here, not CREATE EXTERNAL",
        ),
        (
            "SET",
            good(json!({"query": "SET datafusion.execution.batch_size = 1"})),
            "only SELECT queries run here, not SET",
        ),
        (
            "a local path as a table",
            good(json!({"query": "SELECT * FROM '/etc/passwd'"})),
            "there is no table /etc/passwd; the catalog has demo.ecommerce.data",
        ),
        (
            "a URL as a table",
            good(json!({"query": "SELECT * FROM 'http://169.254.169.254/latest/meta-data'"})),
            "there is no table http://169.254.169.254/latest/meta-data",
        ),
        ("an unknown table", good(json!({"query": "SELECT * FROM nope"})), "there is no table nope"),
        (
            "two statements",
            good(json!({"query": "SELECT 1; DROP TABLE demo.ecommerce.data"})),
            "send exactly one SELECT statement, not 2",
        ),
        (
            "from is text",
            good(json!({"from": "yesterday"})),
            "\"from\" must be epoch seconds, epoch milliseconds or an ISO-8601 date-time",
        ),
        ("from is huge", good(json!({"from": 1e300})), "\"from\" must be epoch seconds"),
        ("from is negative", good(json!({"from": -5})), "\"from\" must be epoch seconds"),
        ("from after to", good(json!({"from": to, "to": from})), "\"from\" must be before \"to\": swap them"),
        (
            "limit is negative",
            good(json!({"limit": -1})),
            "\"limit\" must be a positive whole number of rows",
        ),
        ("limit is huge", good(json!({"limit": 1e30})), "\"limit\" must be a positive whole number of rows"),
        ("limit is text", good(json!({"limit": "ten"})), "\"limit\" must be a positive whole number of rows"),
        ("destination is a list", good(json!({"destination": []})), "\"destination\" must be an object"),
        (
            "unknown destination type",
            good(json!({"destination": {"type": "ftp", "params": {}}})),
            "destination type \"ftp\" is not supported; use one of",
        ),
        (
            "gcs without a bucket",
            good(json!({"destination": {"type": "gcs", "params": {}}})),
            "gcs.bucket is missing: name the bucket",
        ),
        (
            "file on a server without a file root",
            good(json!({"destination": {"type": "file", "params": {}}})),
            "needs the operator to set [destinations.file] root",
        ),
        (
            "azure key and SAS both",
            good(
                json!({"destination": {"type": "azure", "params": {"azure.account": "acct1", "azure.container": "c01", "azure.accesskey": "a2V5", "azure.sastoken": "sv=1"}}}),
            ),
            "exactly one of azure.accesskey",
        ),
        (
            "gcs endpoint at the metadata service",
            good(
                json!({"destination": {"type": "gcs", "params": {"gcs.bucket": "b01", "gcs.credentials": "{\"type\": \"service_account\"}", "gcs.endpoint": "http://169.254.169.254"}}}),
            ),
            "gcs.endpoint 169.254.169.254 resolves to 169.254.169.254, an internal",
        ),
        (
            "azure endpoint on a private network",
            good(
                json!({"destination": {"type": "azure", "params": {"azure.account": "acct1", "azure.container": "c01", "azure.accesskey": "a2V5", "azure.endpoint": "http://10.0.0.1:10000"}}}),
            ),
            "azure.endpoint 10.0.0.1 resolves to 10.0.0.1, an internal address",
        ),
        (
            "unknown format",
            good(json!({"param:format": "rar"})),
            "format \"rar\" is not supported; use plain, gzip, zstd, zip",
        ),
        (
            "password with gzip",
            good(json!({"param:file.password": "x"})),
            "file.password works only with format zip, not gzip",
        ),
        (
            "retention.size is text",
            good(json!({"param:retention.size": "big"})),
            "retention.size must be a number of MB",
        ),
        (
            "retention.size over the bound",
            good(json!({"param:retention.size": 1e9})),
            "retention.size must be between 0.01 and 500 (MB)",
        ),
        (
            "retention.time negative",
            good(json!({"param:retention.time": -1})),
            "retention.time must be whole seconds",
        ),
        ("bad email", good(json!({"param:notification.email": "not-an-address"})), "is not a valid address"),
        (
            "header injection in email",
            good(json!({"param:notification.email": "a@b.com\r\nBcc: c@d.com"})),
            "is not a valid address",
        ),
        (
            "endpoint not a URL",
            good(json!({"param:aws.endpoint": "file:///etc/passwd"})),
            "aws.endpoint must be an http:// or https:// URL",
        ),
        (
            "credentials in the endpoint",
            good(json!({"param:aws.endpoint": "http://AKIAEXAMPLE:s3cret@s3.example.com"})),
            "aws.endpoint must not hold a user name or password",
        ),
        (
            "endpoint at the metadata service",
            good(json!({"param:aws.endpoint": "http://169.254.169.254"})),
            "aws.endpoint 169.254.169.254 resolves to 169.254.169.254, an internal",
        ),
        (
            "endpoint on a private network",
            good(json!({"param:aws.endpoint": "http://10.0.0.1:9000"})),
            "aws.endpoint 10.0.0.1 resolves to 10.0.0.1, an internal",
        ),
        (
            "endpoint at an IPv6 link-local address",
            good(json!({"param:aws.endpoint": "http://[fe80::1]:9000"})),
            "aws.endpoint fe80::1 resolves to fe80::1, an internal",
        ),
        ("unknown param", good(json!({"param:aws.evil": "x"})), "unknown parameter \"aws.evil\" for type s3"),
        (
            "multiplefile is text",
            good(json!({"param:multiplefile": "maybe"})),
            "multiplefile must be true or false",
        ),
        (
            "no bucket, and no default bucket",
            good(json!({"destination": {"type": "s3", "params": {"format": "gzip"}}})),
            "destination.params needs aws.bucket",
        ),
        (
            "endpoint at a NAT64 private address",
            good(json!({"param:aws.endpoint": "http://[64:ff9b::a00:5]:9000"})),
            "aws.endpoint 64:ff9b::a00:5 resolves to 64:ff9b::a00:5, an internal",
        ),
        (
            "unknown server-side encryption",
            good(json!({"param:aws.sse": "rot13"})),
            "aws.sse \"rot13\" is not supported",
        ),
        (
            "KMS key without aws:kms",
            good(json!({"param:aws.kmskeyid": "alias/mine"})),
            "aws.kmskeyid needs aws.sse set to aws:kms",
        ),
        (
            "unknown storage class",
            good(json!({"param:aws.storageclass": "COLD"})),
            "aws.storageclass \"COLD\" is not a storage class",
        ),
        (
            "region with spaces",
            good(json!({"param:aws.region": "eu west"})),
            "aws.region \"eu west\" is not a region name",
        ),
        (
            "continuous over no time column",
            good(json!({"query": "SELECT 1 AS one", "to": null})),
            "a job without `to` is continuous",
        ),
    ];
    let url = format!("{}/search/query", app.api);
    // A connection per request: the server answers an oversized body before reading it all
    // and closes that connection, which a pooled client could otherwise pick up again.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for (what, body, says) in cases {
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
