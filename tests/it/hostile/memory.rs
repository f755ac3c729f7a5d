//! Queries whose memory their own pool does not see (aggregations over a table joined with
//! itself, several large outputs in one row, `regexp_replace`) are held to the process's
//! memory limit: each job fails saying the query needs more memory than allowed, and the
//! server goes on.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// The peak resident memory of this process (the test's own server runs in it), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

/// A server over 2,000 demo rows (4M joined), with this query budget and margin.
async fn app_with_memory(budget_mb: u64, margin_mb: u64) -> TestApp {
    spawn_app_with(2_000, |c| {
        c.worker.query_memory_mb = budget_mb;
        c.worker.memory_margin_mb = margin_mb;
    })
    .await
}

/// Runs `query` as the one job of `app`; returns the job's status and first error, and checks
/// the server still answers.
async fn run_job(app: &TestApp, query: &str) -> (String, String) {
    let id = app.submit_export(query, json!({"format": "gzip"})).await;
    tokio::time::timeout(Duration::from_secs(300), app.worker.try_run_next_job())
        .await
        .expect("the job ends within 300 s")
        .unwrap();
    let job = app.job(&id).await;
    let (status, error) =
        (job["status"].as_str().unwrap_or_default(), job["error"][0].as_str().unwrap_or_default());
    println!("{status} {query:.80}: {error:.300}");
    assert_eq!(app.get("/healthz").await.0, 200, "{query}: the server is still up");
    (status.to_string(), error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_past_the_process_memory_limit_fail_their_job_and_the_server_stays_up() {
    let (budget_mb, margin_mb) = (64, 128);
    let app = app_with_memory(budget_mb, margin_mb).await;
    let over_budget = "the query needs more memory than one query may use (worker.query_memory_mb)";
    let t = "demo.ecommerce.data";
    let distinct_repeats: Vec<String> =
        (0..20).map(|i| format!("repeat(uri, {}) AS c{i}", 400 + i)).collect();
    let queries = [
        // 4M joined rows aggregated: about 400 MB of strings that no pool estimate held.
        format!(
            "SELECT a.cookie, count(*) AS n, string_agg(b.userAgent, ',') AS s FROM {t} a, {t} b GROUP BY a.cookie"
        ),
        // Twenty outputs of about 25 MB each in one row: each fits the pool alone.
        format!("SELECT {}, 1 AS one FROM {t}", distinct_repeats.join(", ")),
        // The replacement between every two characters of every value: about 100 MB.
        format!("SELECT regexp_replace(userAgent, '', '{}', 'g') AS s FROM {t}", "y".repeat(500)),
    ];
    for query in &queries {
        let (status, error) = run_job(&app, query).await;
        assert!(status == "FAILED" && error.starts_with(over_budget), "{query}: {status} {error}");
    }
    assert_eq!(app.open_multipart_uploads().await, 0, "no upload left open");
    // Loosely: the test process also holds the test's client, LocalStack's answers and a debug
    // binary's pages. Unguarded, the first query alone took this process past 1.2 GiB.
    let peak = peak_rss_mib();
    println!("peak RSS of the test process: {peak} MiB (limit {budget_mb} + {margin_mb} MB)");
    assert!(peak < budget_mb + margin_mb + 300, "peak RSS {peak} MiB");
}

/// What is built in one step no check between batches can interrupt is bounded too: a grouped
/// `string_agg` of a 4M-row join emits its 2,000 groups in slices, the process's headroom
/// checked in between (it finished a 400 MB emission at 1,261 MiB RSS); and one value holding
/// the whole join (a 240 MB list, within a 256 MB budget) fails when it is written as text
/// (formatted and quoted whole after the query ended, it took the process to 1.3 GiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_built_in_one_step_stays_bounded_and_fails_its_job() {
    let (budget_mb, margin_mb) = (256, 256);
    let app = app_with_memory(budget_mb, margin_mb).await;
    let t = "demo.ecommerce.data";
    let cases = [
        (
            format!(
                "SELECT a.cookie, count(*) AS n, string_agg(b.userAgent, ',') AS s FROM {t} a, {t} b GROUP BY a.cookie"
            ),
            "the query needs more memory than one query may use (worker.query_memory_mb)",
        ),
        (
            format!("SELECT array_agg(b.uri) AS a FROM {t} a, {t} b"),
            "a value of the result is larger than 100 MiB as text, the most one CSV or JSON Lines value may take",
        ),
    ];
    for (query, expected) in &cases {
        let (status, error) = run_job(&app, query).await;
        assert_eq!(status, "FAILED", "{query}: {error}");
        assert!(error.contains(expected), "{query}: {error}");
    }
    assert_eq!(app.open_multipart_uploads().await, 0, "no upload left open");
    let peak = peak_rss_mib();
    println!("peak RSS of the test process: {peak} MiB (limit {budget_mb} + {margin_mb} MB)");
    // The test process's own share (a debug binary, the test's client and data) is about
    // 150 MiB; unbounded, either query alone took it past 1.3 GiB.
    assert!(peak < budget_mb + margin_mb + 300, "peak RSS {peak} MiB");
}
