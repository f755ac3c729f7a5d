//! The job lifecycle as operators steer it: stop, start, remove, invalid transitions, a
//! graceful shutdown with a restart in the middle of a job, and the metrics that show it.

use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::export::{QUERY, check_completed_export};

/// Many small parts, so that a job is still running when the test steers it.
fn small_gzip_parts() -> serde_json::Value {
    json!({"format": "gzip", "retention.size": 0.01, "notification.email": "ops@example.com"})
}

type Run = tokio::task::JoinHandle<Result<Option<uuid::Uuid>, forwarder::store::StoreError>>;

/// A server whose worker is exporting `rows` rows in small parts, 3 of them uploaded already.
async fn export_under_way(rows: u64) -> (TestApp, String, Run) {
    let app = spawn_app(rows).await;
    let id = app.submit_export(QUERY, small_gzip_parts()).await;
    let worker = app.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });
    app.wait_for_parts(&id, 3).await;
    (app, id, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_start_gives_exactly_the_rows_of_an_uninterrupted_run() {
    // Parts of 3 KB (about 45 rows): well over a thousand of them.
    let app = spawn_app_with(60_000, |c| c.limits.retention_size_mb_min = 0.001).await;
    let id = app
        .submit_export(
            QUERY,
            json!({"format": "gzip", "retention.size": 0.003, "notification.email": "ops@example.com"}),
        )
        .await;
    let worker = app.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });
    app.wait_for_parts(&id, 3).await;

    let (status, body) = app.get(&format!("/search/job/stop/{id}")).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap().unwrap();
    let stopped = app.job(&id).await;
    assert_eq!(stopped["status"], "STOPPED", "{stopped:#}");
    assert!(stopped["lastDatetime"].as_i64().is_some(), "lastDatetime is kept: {stopped:#}");
    let parts_at_stop = stopped["extra"]["parts"].as_array().unwrap().clone();
    assert!(stopped["eventsSent"].as_u64().unwrap() < 60_000, "stopped before the end: {stopped:#}");
    assert_eq!(app.open_multipart_uploads().await, 0, "the open part was finished, not left behind");
    assert!(email_about(&id, "STOPPED").await.contains("STOPPED"));

    // Invalid transitions answer 409 with the reason and change nothing.
    let (status, body) = app.get(&format!("/search/job/stop/{id}")).await;
    assert_eq!((status.as_u16(), body["status"].as_u64()), (409, Some(409)), "{body}");
    assert!(body["msg"].as_str().unwrap().contains("already STOPPED"), "{body}");

    let (status, body) = app.get(&format!("/search/job/start/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"]["status"], "CREATED");
    let (status, body) = app.get(&format!("/search/job/start/{id}")).await;
    assert_eq!(status, 409, "{body}");
    app.worker.try_run_next_job().await.unwrap().unwrap();

    // Part numbers continue; the rows are exactly the query's, each once.
    let job = check_completed_export(&app, &id, "csv.gz", Some(3_000), None).await;
    let parts = job["extra"]["parts"].as_array().unwrap();
    assert!(parts.len() > 1000, "part numbers go past 999 (1000, 1001, …): {} parts", parts.len());
    assert!(parts.len() > parts_at_stop.len());
    assert_eq!(
        &parts[..parts_at_stop.len()],
        &parts_at_stop[..],
        "parts uploaded before the stop are kept as they were"
    );

    let (status, body) = app.get(&format!("/search/job/stop/{id}")).await;
    assert_eq!(status, 409, "a completed job cannot be stopped: {body}");
    let (status, body) = app.get(&format!("/search/job/remove/{id}")).await;
    assert_eq!((status.as_u16(), body["object"]["status"].as_str()), (200, Some("REMOVED")), "{body}");
    let (status, body) = app.get(&format!("/search/job/start/{id}")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("REMOVED"), "{body}");
    let (status, _) = app.get(&format!("/search/job/start/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_are_stopped_started_and_removed_before_a_worker_takes_them() {
    let app = spawn_app(5_000).await;
    let params = json!({"format": "gzip", "notification.email": "ops@example.com"});
    let waiting = app.submit_export(QUERY, params.clone()).await;
    let unwanted = app.submit_export(QUERY, params).await;

    // Stopping a queued job ends it at once, and its recipients hear of it.
    let (status, body) = app.get(&format!("/search/job/stop/{waiting}")).await;
    assert_eq!((status.as_u16(), body["object"]["status"].as_str()), (200, Some("STOPPED")), "{body}");
    let email = unfold_qp(&email_about(&waiting, "STOPPED").await);
    assert!(email.contains("Rows:     0 rows"), "the email says nothing was exported: {email}");
    let (status, body) = app.get(&format!("/search/job/remove/{unwanted}")).await;
    assert_eq!((status.as_u16(), body["object"]["status"].as_str()), (200, Some("REMOVED")), "{body}");

    // Neither is run; nothing reaches the bucket.
    assert_eq!(app.worker.try_run_next_job().await.unwrap(), None, "no job is left to run");
    assert!(app.keys().await.is_empty());
    for command in ["start", "stop", "remove"] {
        let (status, body) = app.get(&format!("/search/job/{command}/{unwanted}")).await;
        assert_eq!(status, 409, "{command} of a removed job: {body}");
    }

    // The stopped one starts again and runs to the end like any other.
    let (status, body) = app.get(&format!("/search/job/start/{waiting}")).await;
    assert_eq!((status.as_u16(), body["object"]["status"].as_str()), (200, Some("CREATED")), "{body}");
    let ran = app.worker.try_run_next_job().await.unwrap();
    assert_eq!(ran.map(|id| id.to_string()), Some(waiting.clone()));
    check_completed_export(&app, &waiting, "csv.gz", None, None).await;
    email_about(&waiting, "COMPLETED").await;
    assert_eq!(app.job(&unwanted).await["status"], "REMOVED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_domain_cannot_take_every_running_slot() {
    let app = spawn_app_with(30_000, |c| c.worker.max_running_per_domain = Some(1)).await;
    let first = app.submit_export(QUERY, small_gzip_parts()).await;
    let second = app.submit_export(QUERY, json!({"format": "gzip"})).await;
    let worker = app.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });
    app.wait_for_parts(&first, 1).await;
    // The default domain has its one running job: its second job waits...
    assert_eq!(
        app.worker.try_run_next_job().await.unwrap(),
        None,
        "a second job of the same domain is not claimed"
    );
    assert_eq!(app.job(&second).await["status"], "CREATED");
    // ...while another domain's job runs beside it.
    let (_, token) = auth_cli(&app, &["create-token", "--domain", "other"]);
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let other = reqwest::Client::new()
        .post(format!("{}/search/query", app.api))
        .bearer_auth(token.trim())
        .json(&json!({"query": QUERY, "from": from, "to": to, "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let other_id = other["object"]["id"].as_str().unwrap_or_else(|| panic!("{other}")).to_string();
    let ran = app.worker.try_run_next_job().await.unwrap();
    assert_eq!(ran.map(|id| id.to_string()), Some(other_id));
    // Once the first ends, the second is claimed.
    tokio::time::timeout(Duration::from_secs(60), run).await.unwrap().unwrap().unwrap();
    let ran = app.worker.try_run_next_job().await.unwrap();
    assert_eq!(ran.map(|id| id.to_string()), Some(second.clone()));
    assert_eq!(app.job(&second).await["status"], "COMPLETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_job_continues_it() {
    let (app, id, run) = export_under_way(30_000).await;

    // Graceful shutdown: the open part is uploaded and the job handed back, not left RUNNING.
    app.worker.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap().unwrap();
    let handed_back = app.job(&id).await;
    assert_eq!(handed_back["status"], "CREATED", "{handed_back:#}");
    assert_eq!(app.open_multipart_uploads().await, 0);

    let app = app.restart().await;
    assert_eq!(
        app.job(&id).await["extra"]["parts"],
        handed_back["extra"]["parts"],
        "the new server sees the checkpoint"
    );
    assert_eq!(app.worker.try_run_next_job().await.unwrap().map(|j| j.to_string()), Some(id.clone()));
    check_completed_export(&app, &id, "csv.gz", Some(10_000), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_export_did() {
    let app = spawn_app(20_000).await;
    let id = app.submit_export(QUERY, json!({"format": "gzip", "retention.size": 0.5})).await;
    let before = app.metrics().await;
    assert_eq!(sample(&before, "forwarder_jobs", Some(("status", "CREATED"))), 1.0);
    assert_eq!(sample(&before, "forwarder_rows_exported_total", None), 0.0);
    app.worker.try_run_next_job().await.unwrap().unwrap();

    let job = app.job(&id).await;
    let after = app.metrics().await;
    let parts = job["extra"]["parts"].as_array().unwrap();
    let bytes: u64 = parts.iter().map(|p| p["bytes"].as_u64().unwrap()).sum();
    assert_eq!(sample(&after, "forwarder_jobs", Some(("status", "COMPLETED"))), 1.0);
    assert_eq!(sample(&after, "forwarder_jobs", Some(("status", "CREATED"))), 0.0);
    assert_eq!(sample(&after, "forwarder_jobs_ended_total", Some(("status", "COMPLETED"))), 1.0);
    assert_eq!(sample(&after, "forwarder_rows_exported_total", None), job["eventsSent"].as_f64().unwrap());
    assert_eq!(sample(&after, "forwarder_parts_uploaded_total", None), parts.len() as f64);
    assert_eq!(sample(&after, "forwarder_bytes_uploaded_total", None), bytes as f64);
    let calls = sample(&after, "forwarder_s3_request_seconds_count", Some(("operation", "PutObject")))
        + sample(
            &after,
            "forwarder_s3_request_seconds_count",
            Some(("operation", "CompleteMultipartUpload")),
        );
    assert_eq!(calls, parts.len() as f64, "one completing call per part");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_while_the_job_store_answers() {
    let app = spawn_app(100).await;
    let readyz = || async { app.http.get(format!("{}/readyz", app.api)).send().await.unwrap() };
    let r = readyz().await;
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "ready".to_string()));

    app.store.close().await;
    let r = readyz().await;
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (503, "job store unreachable".to_string()));
    assert_eq!(app.get("/healthz").await.0, 200, "alive all the same: a restart would not help");
    // Calls that need the store say so, rather than failing or refusing the caller.
    let (status, body) = app.get("/search/jobs").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["msg"].as_str().unwrap().contains("job store is unavailable"), "{body}");
}

/// The value of one sample (0 when absent), as a Prometheus scraper reads it.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smtp_server_is_recorded_without_changing_the_status() {
    // Nothing listens on the discard port: every attempt is refused, then retried.
    let app = spawn_app_with(1_000, |c| c.smtp.url = Some("smtp://127.0.0.1:9".into())).await;
    let id =
        app.submit_export(QUERY, json!({"format": "gzip", "notification.email": "ops@example.com"})).await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");
    let errors = job["error"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{job:#}");
    assert!(errors[0].as_str().unwrap().contains("email"), "{job:#}");
    assert_eq!(sample(&app.metrics().await, "forwarder_smtp_errors_total", None), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_cli_lists_shows_and_steers_a_running_server() {
    let app = spawn_app(2_000).await;
    let id = app.submit_export(QUERY, json!({"format": "gzip"})).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
            .arg("jobs")
            .args(args)
            .args(["--server", &app.api])
            .env("FORWARDER_TOKEN", &app.token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&["list"]);
    assert!(
        ok && out.contains(&id) && out.contains("CREATED") && out.lines().next().unwrap().starts_with("ID"),
        "{out}"
    );
    let name = app.job(&id).await["friendlyName"].as_str().unwrap().to_string();
    let (ok, out) = cli(&["list", "--name", &name[..12]]);
    assert!(ok && out.contains(&id), "listed by name prefix: {out}");
    for nothing in ["nothing-starts-like-this", "#", "s3_&status=CREATED"] {
        let (ok, out) = cli(&["list", "--name", nothing]);
        assert!(ok && out.trim() == "no jobs", "the name {nothing:?} is sent as it is: {out}");
    }
    let (ok, out) = cli(&["show", "../jobs"]);
    assert!(!ok && out.contains("invalid value"), "{out}");
    // `show --wait` follows the job, printing its progress, until it ends.
    let waiting = tokio::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .args(["jobs", "show", &id, "--wait", "--server", &app.api])
        .env("FORWARDER_TOKEN", &app.token)
        .output();
    let (waited, ran) = tokio::join!(waiting, app.worker.try_run_next_job());
    ran.unwrap().unwrap();
    let waited = waited.unwrap();
    let progress = String::from_utf8_lossy(&waited.stderr);
    assert!(waited.status.success() && progress.contains("COMPLETED  100%"), "progress: {progress}");
    assert!(String::from_utf8_lossy(&waited.stdout).contains("COMPLETED"));
    let (ok, out) = cli(&["show", &id[..8]]);
    assert!(
        ok && out.contains("COMPLETED") && out.contains(&format!("apiv2_{id}_001.csv.gz")),
        "shown by its first characters: {out}"
    );
    let (ok, out) = cli(&["show", "0000000000"]);
    assert!(!ok && out.contains("no job id starts with 0000000000"), "{out}");
    let (ok, out) = cli(&["stop", &id]);
    assert!(
        !ok && out.contains("has already ended (COMPLETED)"),
        "a refused command fails with the reason: {out}"
    );
    let (ok, out) = cli(&["remove", &id, "--json"]);
    let removed: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(ok && removed["status"] == "REMOVED", "{out}");
    let (ok, out) = cli(&["list", "--status", "COMPLETED"]);
    assert!(ok && out.trim() == "no jobs", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_shutdown_deadline_uploads_are_aborted_and_the_job_is_handed_back() {
    // One plain part of ~16 MB: a multipart upload that is still open when the worker stops.
    let app = spawn_app_with(60_000, |c| c.worker.shutdown_deadline = Duration::from_millis(1)).await;
    let id = app
        .submit_export(
            QUERY,
            json!({"format": "plain", "retention.size": 50, "notification.email": "ops@example.com"}),
        )
        .await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(app.worker.clone().run(shutdown.clone()));
    for _ in 0..300 {
        if app.open_multipart_uploads().await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.open_multipart_uploads().await > 0, "the part's multipart upload started");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), worker).await.unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "CREATED", "handed back, not left RUNNING: {job:#}");
    let remaining = app.s3.list_multipart_uploads().bucket(&app.bucket).send().await.unwrap();
    assert!(remaining.uploads().is_empty(), "the unfinished upload was aborted: {remaining:?}");
    assert!(app.keys().await.is_empty());

    let app = app.restart().await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    check_completed_export(&app, &id, "csv", Some(50_000_000), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_through_this_server_runs_without_waiting_for_the_next_poll() {
    // An hour between polls: only the API's signal can start these jobs within the test.
    let app = spawn_app_with(2_000, |c| c.worker.poll_interval = Duration::from_secs(3600)).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(app.worker.clone().run(shutdown.clone()));
    // The worker polls once as it starts; both jobs come after that, one after the other.
    for _ in 0..2 {
        let id = app.submit_export(QUERY, json!({"format": "gzip"})).await;
        let mut job = app.job(&id).await;
        for _ in 0..300 {
            if !matches!(job["status"].as_str(), Some("CREATED" | "RUNNING")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            job = app.job(&id).await;
        }
        assert_eq!(job["status"], "COMPLETED", "the worker was woken: {job:#}");
    }
    shutdown.cancel();
    worker.await.unwrap();
}
