//! Queries that would overflow the stack or allocate past the memory budget, and CSV tables
//! with quoted newlines: each is refused, fails its job with a clear message or runs, and the
//! server stays up.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// Submits `query` over the demo table's whole time range; runs the job when it is queued.
/// Returns the submission's answer and, when it was queued, the job as it ended.
async fn submit_and_run(app: &TestApp, query: &str) -> (reqwest::StatusCode, Value, Option<Value>) {
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let body = json!({"query": query, "from": from, "to": to,
                      "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}});
    let (status, answer) = tokio::time::timeout(Duration::from_secs(120), app.submit(body))
        .await
        .expect("an answer to the submission within 120 s");
    let Some(id) = answer["object"]["id"].as_str().filter(|_| status == 200) else { return (status, answer, None) };
    tokio::time::timeout(Duration::from_secs(300), app.worker.try_run_next_job())
        .await
        .expect("the job ends within 300 s")
        .unwrap()
        .unwrap();
    let job = app.job(id).await;
    (status, answer, Some(job))
}

async fn assert_up(app: &TestApp, what: &str) {
    assert_eq!(app.get("/healthz").await.0, 200, "{what}: the server is still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_queries_are_refused_or_run_and_the_server_stays_up() {
    let app = spawn_app(50).await;
    let chain = |n: usize, term: &dyn Fn(usize) -> String, op: &str| (0..n).map(term).collect::<Vec<_>>().join(op);
    let one = |_| "1".to_string();
    let shapes: Vec<(&str, String)> = vec![
        ("1+1+…+1, 1,000 terms", format!("SELECT {} AS n", chain(1_000, &one, "+"))),
        ("1+1+…+1, 10,000 terms", format!("SELECT {} AS n", chain(10_000, &one, "+"))),
        (
            "1,000 ORs",
            format!("SELECT * FROM demo.ecommerce.data WHERE {}", chain(1_001, &|i| format!("statusCode = {i}"), " OR ")),
        ),
        ("500 UNION ALL branches", chain(501, &|i| format!("SELECT {i} AS n"), " UNION ALL ")),
        ("200 nested subqueries", format!("{}SELECT 1 AS n{}", "SELECT n FROM (".repeat(200), ") AS t".repeat(200))),
        ("20 nested subqueries", format!("{}SELECT 1 AS n{}", "SELECT n FROM (".repeat(20), ") AS t".repeat(20))),
        ("10,000 nested parentheses", format!("SELECT {}1{} AS n", "(".repeat(10_000), ")".repeat(10_000))),
        ("1,000 nested calls", format!("SELECT {}1{} AS n", "abs(".repeat(1_000), ")".repeat(1_000))),
        ("10,000 subscripts", format!("SELECT make_array(1){} AS n", "[1]".repeat(10_000))),
        ("100,000 unary minuses", format!("SELECT {}1 AS n", "- ".repeat(100_000))),
        ("a 1 MB chain of ANDs", format!("SELECT 1 AS n WHERE {}", chain(100_000, &|_| "true".into(), " AND "))),
    ];
    for (what, query) in shapes {
        let (status, answer, job) = submit_and_run(&app, &query).await;
        match job {
            None => {
                assert_eq!((status.as_u16(), answer["status"].as_u64()), (400, Some(101)), "{what}: {answer}");
                let msg = answer["msg"].as_str().unwrap();
                assert!(msg.starts_with("the query is too deeply nested") && msg.contains("UNION ALL"), "{what}: {msg}");
            }
            Some(job) => assert_eq!(job["status"], "COMPLETED", "{what}: {job:#}"),
        }
        println!("{what:<32} {status} {}", answer["msg"].as_str().unwrap_or("queued, completed"));
        assert_up(&app, what).await;
    }
}
