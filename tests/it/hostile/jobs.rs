//! Jobs that crash their worker, tenants that crowd each other out, a restart after kill -9.
//! The crash tests use the worker's test hooks (`FORWARDER_TEST_ABORT_ON_QUERY`,
//! `FORWARDER_TEST_PANIC_ON_QUERY`): a job whose query holds the marker aborts the process or
//! panics its run, as a query that crashes would.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;
use crate::export::{QUERY, check_completed_export};

/// `forwarder worker` as a process of its own on `app`'s data directory (its SQLite store),
/// table and SMTP server; `extra` adds to its environment. Its log goes to `worker.log`.
fn worker_process(app: &TestApp, lease: &str, extra: &[(&str, &str)]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(app.dir.join("worker.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .arg("worker")
        .env("FORWARDER_DATA_DIR", app.dir.join("data"))
        .env("FORWARDER_CATALOG", &app.catalog)
        .env("FORWARDER_WORKER__LEASE", lease)
        .env("FORWARDER_WORKER__POLL_INTERVAL", "200ms")
        .env("FORWARDER_WORKER__CONCURRENCY", "1")
        .env("FORWARDER_UPLOAD__PART_SIZE_MIB", "5")
        .env("FORWARDER_S3__ALLOWED_ENDPOINTS", "127.0.0.0/8")
        .env("FORWARDER_SMTP__URL", env("FORWARDER_TEST_SMTP_URL"))
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The process's exit, waiting at most `within` (a hang guard); `None` if it still runs.
async fn exit_of(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the job until `done` says so; panics with `what` past `within` (a hang guard).
async fn job_until(
    app: &TestApp,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + within;
    loop {
        let job = app.job(id).await;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < until, "{what} within {within:?}: {job:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parts(job: &Value) -> usize {
    job["extra"]["parts"].as_array().map_or(0, Vec::len)
}

fn marker() -> String {
    format!("crash_{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_aborts_its_process_at_every_run_fails_after_three_and_stays_failed() {
    let app = spawn_app(1_000).await;
    let marker = marker();
    let crashing = format!("SELECT * FROM demo.ecommerce.data WHERE uri <> '{marker}'");
    let email = json!({"format": "gzip", "notification.email": "ops@example.com"});
    let id = app.submit_export(&crashing, email.clone()).await;
    let healthy = app.submit_export(QUERY, email).await;
    // And one that panics, with an access key the panic quotes.
    let panic_marker = self::marker();
    let panicking = format!("SELECT * FROM demo.ecommerce.data WHERE uri <> '{panic_marker}'");
    let panics = app
        .submit_export(&panicking, json!({"format": "gzip", "aws.accesskey": "AKIAPANICKEY0000002"}))
        .await;
    let hook = [
        ("FORWARDER_TEST_ABORT_ON_QUERY", marker.as_str()),
        ("FORWARDER_TEST_PANIC_ON_QUERY", panic_marker.as_str()),
    ];

    // Each start claims the job (the dead predecessor's lease is taken back at once), and
    // the job ends the process again.
    for run in 1..=3 {
        let mut worker = worker_process(&app, "60s", &hook);
        let status = exit_of(&mut worker, Duration::from_secs(30)).await.unwrap_or_else(|| {
            let _ = worker.kill();
            panic!("run {run}: the job did not take the process down")
        });
        assert_eq!(status.signal(), Some(6), "run {run}: aborted (SIGABRT): {status:?}");
        assert_eq!(app.job(&id).await["status"], "RUNNING", "run {run}");
    }

    // A run that died mid-part would have left its upload open in the bucket.
    let open_key = format!("apiv2_{id}_001.csv.gz");
    app.s3.create_multipart_upload().bucket(&app.bucket).key(&open_key).send().await.unwrap();
    assert_eq!(app.open_multipart_uploads().await, 1);

    // The fourth start finds it ended three runs without progress: FAILED, not run again.
    let mut worker = worker_process(&app, "60s", &hook);
    let job =
        job_until(&app, &id, Duration::from_secs(30), "the job fails", |j| j["status"] != "RUNNING").await;
    assert_eq!(job["status"], "FAILED", "{job:#}");
    let error = job["error"][0].as_str().unwrap();
    assert!(
        error
            .contains("ended its worker 3 times without progress (crash or panic); it will not be run again"),
        "{error}"
    );
    let email = email_about(&id, "FAILED").await;
    assert!(email.contains("3 times without progress"), "the end email tells why: {email}");
    assert_eq!(app.open_multipart_uploads().await, 0, "the upload it left open is aborted");
    // The process is still up, and runs the next job.
    job_until(&app, &healthy, Duration::from_secs(60), "the next job completes", |j| {
        j["status"] == "COMPLETED"
    })
    .await;
    let failed = job_until(&app, &panics, Duration::from_secs(30), "the panicking job ends", |j| {
        j["status"] != "CREATED" && j["status"] != "RUNNING"
    })
    .await;
    assert_eq!(failed["status"], "FAILED", "{failed:#}");
    assert!(worker.try_wait().unwrap().is_none(), "the worker is still up");
    let log = std::fs::read_to_string(app.dir.join("worker.log")).unwrap();
    assert!(
        log.contains("panicking as the test asked, while signing with ***"),
        "the panic is logged: {log}"
    );
    assert!(!log.contains("AKIAPANICKEY0000002"), "without the key it quoted");
    worker.kill().unwrap();
    worker.wait().unwrap();

    // A further start does not run it (nor die): a few polls later the job is as it was.
    let mut worker = worker_process(&app, "60s", &hook);
    assert!(
        exit_of(&mut worker, Duration::from_secs(3)).await.is_none(),
        "the next start does not run the job"
    );
    assert_eq!(app.job(&id).await["status"], "FAILED");
    worker.kill().unwrap();
    worker.wait().unwrap();

    // It can be removed, and its sealed credentials go from the store.
    let (status, removed) = app.get(&format!("/search/job/remove/{id}")).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(app.job(&id).await["status"], "REMOVED");
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.dir.join("data/jobs.sqlite").display()))
        .await
        .unwrap();
    let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT sealed_secrets FROM jobs WHERE id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sealed, None, "the credentials are deleted, not hidden");
}

/// Every email about `job_id` in the test SMTP server's Maildir.
fn emails_about(job_id: &str) -> Vec<String> {
    let dir = std::path::PathBuf::from(env("FORWARDER_TEST_MAILDIR")).join("new");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .filter(|text| text.contains(job_id))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ending_whose_worker_died_before_its_email_is_told_by_the_next_start_once() {
    let app = spawn_app(1_000).await;
    let marker = marker();
    let query = format!("SELECT * FROM demo.ecommerce.data WHERE uri <> '{marker}'");
    let id =
        app.submit_export(&query, json!({"format": "gzip", "notification.email": "ops@example.com"})).await;

    // The worker records the job COMPLETED and dies before it sends the email.
    let hook = [("FORWARDER_TEST_ABORT_BEFORE_EMAIL", marker.as_str())];
    let mut worker = worker_process(&app, "60s", &hook);
    let status = exit_of(&mut worker, Duration::from_secs(60)).await.unwrap_or_else(|| {
        let _ = worker.kill();
        panic!("the worker did not end after the job")
    });
    assert_eq!(status.signal(), Some(6), "aborted (SIGABRT): {status:?}");
    let job = app.job(&id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(emails_about(&id).is_empty(), "no email was sent before the process ended");

    // The next start on this machine finds the sender gone and sends it: once, with the
    // job's rows and parts.
    let mut worker = worker_process(&app, "60s", &[]);
    let email = unfold_qp(&email_about(&id, "COMPLETED").await);
    assert!(email.contains("1,000 rows"), "{email}");
    for part in job["extra"]["paths"].as_array().unwrap() {
        assert!(email.contains(part.as_str().unwrap()), "the email names {part}: {email}");
    }
    // And a job that ends as usual, sent at once by the worker that ran it.
    let usual =
        app.submit_export(QUERY, json!({"format": "gzip", "notification.email": "ops@example.com"})).await;
    email_about(&usual, "COMPLETED").await;
    // A few of its polls later (every 200 ms), still one email each, and none is still due:
    // the next start (a third process) would send nothing again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(emails_about(&id).len(), 1, "told once");
    assert_eq!(emails_about(&usual).len(), 1, "told once");
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.dir.join("data/jobs.sqlite").display()))
        .await
        .unwrap();
    let due: Vec<(String, String)> =
        sqlx::query_as("SELECT id, email_due FROM jobs WHERE email_due IS NOT NULL")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(due.is_empty(), "every sent email is marked told: {due:?}");
    assert!(worker.try_wait().unwrap().is_none(), "the worker is still up");
    worker.kill().unwrap();
    worker.wait().unwrap();
    let log = std::fs::read_to_string(app.dir.join("worker.log")).unwrap();
    assert!(log.contains("sending the email whose sender went away before sending it"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_job_fails_that_job_with_its_message_and_the_worker_goes_on() {
    let marker = marker();
    // SAFETY: nextest runs each test in a process of its own (and the marker is this test's).
    unsafe { std::env::set_var("FORWARDER_TEST_PANIC_ON_QUERY", &marker) };
    let app = spawn_app(1_000).await;
    let panicking = format!("SELECT * FROM demo.ecommerce.data WHERE uri <> '{marker}'");
    let params = json!({"format": "gzip", "aws.accesskey": "AKIAPANICKEY0000001", "notification.email": "ops@example.com"});
    let id = app.submit_export(&panicking, params).await;
    let next = app.submit_export(QUERY, json!({"format": "gzip"})).await;

    let ran =
        tokio::time::timeout(Duration::from_secs(60), app.worker.try_run_next_job()).await.expect("no hang");
    assert_eq!(ran.unwrap().map(|j| j.to_string()), Some(id.clone()));
    let job = app.job(&id).await;
    assert_eq!(job["status"], "FAILED", "{job:#}");
    let error = job["error"][0].as_str().unwrap();
    assert!(
        error.contains("a panic") && error.contains("panicking as the test asked"),
        "the panic's message: {error}"
    );
    assert!(
        !error.contains("AKIAPANICKEY0000001") && error.contains("signing with ***"),
        "no secret in it: {error}"
    );
    let email = email_about(&id, "FAILED").await;
    assert!(!email.contains("AKIAPANICKEY0000001"), "{email}");

    // The worker runs the next job, and never the failed one again.
    let ran = app.worker.try_run_next_job().await.unwrap();
    assert_eq!(ran.map(|j| j.to_string()), Some(next.clone()));
    assert_eq!(app.job(&next).await["status"], "COMPLETED");
    assert_eq!(app.worker.try_run_next_job().await.unwrap(), None, "no retry loop");
    assert_eq!(app.job(&id).await["status"], "FAILED");
    assert_eq!(app.get("/healthz").await.0, 200);
    let (status, removed) = app.get(&format!("/search/job/remove/{id}")).await;
    assert_eq!((status.as_u16(), removed["object"]["status"].as_str()), (200, Some("REMOVED")), "{removed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_that_waited_goes_before_a_crowded_domains_queue() {
    // No cap per domain: the turn alone must keep B from waiting behind A's queue.
    let app = spawn_app_with(1_000, |c| c.worker.max_running_per_domain = Some(0)).await;
    let (from, _) = forwarder::query::demo::time_range(app.rows);
    let continuous = json!({"query": QUERY, "from": from, "to": null,
                            "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}});
    // Domain A (the app's token): two continuous jobs running, then 500 queued.
    let mut running = Vec::new();
    for _ in 0..2 {
        let (status, body) = app.submit(continuous.clone()).await;
        assert_eq!(status, 200, "{body}");
        let id = body["object"]["id"].as_str().unwrap().to_string();
        let worker = app.worker.clone();
        running.push(tokio::spawn(async move { worker.try_run_next_job().await }));
        job_until(&app, &id, Duration::from_secs(30), "the continuous job runs", |j| {
            j["status"] == "RUNNING"
        })
        .await;
    }
    for _ in 0..50 {
        let batch = (0..10).map(|_| app.submit_export(QUERY, json!({"format": "gzip"})));
        futures::future::join_all(batch).await;
    }
    // Domain B submits one job, after all of A's.
    let (ok, token) = auth_cli(&app, &["create-token", "--domain", "b"]);
    assert!(ok);
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let as_b = reqwest::Client::new();
    let answer: Value = as_b
        .post(format!("{}/search/query", app.api))
        .bearer_auth(token.trim())
        .json(&json!({"query": QUERY, "from": from, "to": to,
                      "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_job = answer["object"]["id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_string();
    // The next slot goes to B's job, not to A's oldest queued one.
    let ran = app.worker.try_run_next_job().await.unwrap();
    assert_eq!(ran.map(|j| j.to_string()), Some(b_job.clone()));
    let seen: Value = as_b
        .get(format!("{}/search/job/{b_job}", app.api))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["object"]["status"], "COMPLETED", "{seen}");
    for run in running {
        run.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_ten_times_resumes_its_job_at_once_and_loses_nothing() {
    let app = spawn_app(30_000).await;
    let id = app
        .submit_export(
            QUERY,
            json!({"format": "gzip", "retention.size": 0.01, "notification.email": "ops@example.com"}),
        )
        .await;
    // A lease far longer than the hang guard below: only taking the job back at once passes.
    let lease = "60s";
    let mut worker = worker_process(&app, lease, &[]);
    job_until(&app, &id, Duration::from_secs(30), "the first part", |j| parts(j) >= 1).await;
    let mut resumed_after = Vec::new();
    for kill in 1..=10 {
        worker.kill().unwrap();
        worker.wait().unwrap();
        let at_kill = app.job(&id).await;
        assert_eq!(at_kill["status"], "RUNNING", "kill {kill} came before the end: {at_kill:#}");
        let restarted = Instant::now();
        worker = worker_process(&app, lease, &[]);
        job_until(&app, &id, Duration::from_secs(30), "progress resumes (well before the 60 s lease)", |j| {
            parts(j) > parts(&at_kill) || j["status"] != "RUNNING"
        })
        .await;
        resumed_after.push(restarted.elapsed());
    }
    job_until(&app, &id, Duration::from_secs(60), "the job completes", |j| j["status"] != "RUNNING").await;
    // Every row once, every part index once, no upload left open, the email sent.
    check_completed_export(&app, &id, "csv.gz", Some(10_000), None).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    resumed_after.sort();
    println!(
        "restart to first new part, over 10 kills: median {:?}, min {:?}, max {:?}",
        resumed_after[5], resumed_after[0], resumed_after[9]
    );
}

/// Exactly-once holds for a job cut into time slices too, with the process killed (SIGKILL)
/// mid-slice: the demo table as Parquet, 200,000 rows over 2.2 hours cut into one-hour slices
/// (`worker.min_slice_mb` 0; no slice is shorter than an hour), killed three times. Every row
/// arrives once, and every checkpoint the runs kept names a slice and at most that slice's
/// rows to skip: what a restarted run re-reads is one slice, not the export so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliced_export_killed_mid_slice_re_reads_one_slice_and_loses_nothing() {
    let rows = 200_000;
    let app = spawn_app_on_parquet(rows).await;
    let id = app
        .submit_export(
            QUERY,
            json!({"format": "gzip", "retention.size": 0.5, "notification.email": "ops@example.com"}),
        )
        .await;
    let sliced = [("FORWARDER_WORKER__MIN_SLICE_MB", "0")];
    let mut worker = worker_process(&app, "60s", &sliced);
    job_until(&app, &id, Duration::from_secs(30), "the first part", |j| parts(j) >= 1).await;
    for kill in 1..=3 {
        worker.kill().unwrap();
        worker.wait().unwrap();
        let at_kill = app.job(&id).await;
        assert_eq!(at_kill["status"], "RUNNING", "kill {kill} came before the end: {at_kill:#}");
        worker = worker_process(&app, "60s", &sliced);
        job_until(&app, &id, Duration::from_secs(30), "progress resumes", |j| {
            parts(j) > parts(&at_kill) || j["status"] != "RUNNING"
        })
        .await;
    }
    job_until(&app, &id, Duration::from_secs(60), "the job completes", |j| j["status"] != "RUNNING").await;
    // The worker sends the email after recording COMPLETED: it stays up until it has.
    check_completed_export(&app, &id, "csv.gz", Some(500_000), None).await;
    worker.kill().unwrap();
    worker.wait().unwrap();

    let (from, to) = forwarder::query::demo::time_range(rows);
    let slice = forwarder::query::slices::slice_length(from, to, 64).unwrap();
    let rows_per_slice = (slice / forwarder::query::demo::DEFAULT_STEP_MS + 1) as u64;
    let stored = app.store.get(None, id.parse().unwrap()).await.unwrap().unwrap();
    assert!(stored.parts.len() > 4, "{} parts", stored.parts.len());
    let starts: std::collections::BTreeSet<i64> =
        stored.parts.iter().filter_map(|p| p.resume.from_ms).collect();
    assert!(starts.len() >= 2, "the parts' checkpoints name several slices: {starts:?}");
    for part in &stored.parts {
        let resume = part.resume;
        assert_eq!(resume.slice_ms, Some(slice), "part {} ran in slices: {resume:?}", part.index);
        let slice_start = resume.from_ms.unwrap();
        assert!((slice_start - from) % slice == 0, "part {}: a slice's start: {resume:?}", part.index);
        assert!(resume.skip <= rows_per_slice, "part {}: at most one slice to skip: {resume:?}", part.index);
    }
}
