//! Lost answers from S3: retried creates, parts, completes and aborts leave no upload open and
//! no export short. And an endpoint that echoes credentials in its errors: they reach no job,
//! stored row, email or log line.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::export::{QUERY, check_completed_export};
use crate::faults::{AnswerLoss, Mode, S3Call, spawn_faulty_proxy};

/// Rows of the demo table whose plain CSV is one object of two upload parts: just over the
/// 5 MiB part size the tests run with.
const ROWS: u64 = 20_000;

/// An export of the whole table as one plain object through `proxy`: one multipart upload
/// (create, two parts, complete) for every export.
fn one_object_through(proxy: &str) -> serde_json::Value {
    json!({"aws.endpoint": proxy, "format": "plain", "multiplefile": false, "notification.email": "ops@example.com"})
}

/// Runs the next job, with a guard against a hang.
async fn run_next_job(app: &TestApp) {
    tokio::time::timeout(Duration::from_secs(300), app.worker.try_run_next_job())
        .await
        .expect("the job ran within 5 minutes")
        .unwrap()
        .expect("a job was queued");
}

/// Checks the export as a user would (status, rows, keys, email, no upload open); makes sure
/// it was a multipart upload.
async fn check_one_object(app: &TestApp, id: &str) {
    let job = check_completed_export(app, id, "csv", None, None).await;
    let parts = job["extra"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{job:#}");
    assert!(
        parts[0]["bytes"].as_u64().unwrap() > 5 << 20,
        "the object is over the 5 MiB part size: raise ROWS ({job:#})"
    );
}

/// The seed the answers are lost by: `FORWARDER_TEST_FAULT_SEED` to replay another run, else
/// one that loses answers of every kind within the 20 exports.
fn fault_seed() -> u64 {
    std::env::var("FORWARDER_TEST_FAULT_SEED")
        .map_or(10, |s| s.parse().expect("FORWARDER_TEST_FAULT_SEED is a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_complete_exactly_when_a_tenth_of_s3_answers_are_lost() {
    use S3Call::*;
    let seed = fault_seed();
    let calls = [CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload];
    let loss = Arc::new(AnswerLoss::at_rate(0.1, &calls, seed));
    let proxy = spawn_faulty_proxy(Mode::LoseAnswers(loss.clone())).await;
    let mut app = spawn_app(ROWS).await;
    for export in 1..=20 {
        // A bucket per export: what is in it (and open in it) is that export's alone.
        app.bucket = format!("it-lost-{export}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        app.s3.create_bucket().bucket(&app.bucket).send().await.unwrap();
        let id = app.submit_export(QUERY, one_object_through(&proxy)).await;
        run_next_job(&app).await;
        check_one_object(&app, &id).await;
    }
    let counts: Vec<String> =
        calls.iter().map(|c| format!("{c:?} {}/{}", loss.lost(*c), loss.seen(*c))).collect();
    println!("seed {seed}: answers lost (lost/sent): {}", counts.join(", "));
    for call in [CreateMultipartUpload, UploadPart, CompleteMultipartUpload] {
        assert!(
            loss.lost(call) >= 1,
            "seed {seed} lost no answer to {call:?}: {counts:?}; pick another seed"
        );
    }
}

#[tokio::test]
async fn a_lost_create_answer_leaves_no_upload_open() {
    // Current-thread runtime: the whole server runs on this thread, and so logs here.
    let logs = LogCapture::start("info");
    // The first create's answer is lost (the SDK creates a second upload), and so is the
    // answer to the abort of the first upload (the retry finds it gone).
    let loss =
        Arc::new(AnswerLoss::nth(&[(S3Call::CreateMultipartUpload, 1), (S3Call::AbortMultipartUpload, 1)]));
    let proxy = spawn_faulty_proxy(Mode::LoseAnswers(loss.clone())).await;
    let app = spawn_app(ROWS).await;
    let id = app.submit_export(QUERY, one_object_through(&proxy)).await;
    run_next_job(&app).await;
    check_one_object(&app, &id).await;
    assert_eq!(
        loss.seen(S3Call::CreateMultipartUpload),
        2,
        "the SDK retried the create whose answer was lost"
    );
    assert_eq!(loss.lost(S3Call::AbortMultipartUpload), 1, "the upload the lost answer named was aborted");
    let log = logs.text();
    assert!(!log.contains("could not abort"), "an abort whose retry found the upload gone is done:\n{log}");
}

#[tokio::test]
async fn credentials_an_endpoint_echoes_reach_no_job_row_email_or_log() {
    // The server's own filter at its most verbose: RUST_LOG=trace.
    let logs = LogCapture::start("trace");
    let echoed = Arc::new(Mutex::new(Vec::new()));
    let proxy = spawn_faulty_proxy(Mode::EchoCredentials(echoed.clone())).await;
    let app = spawn_app(1_000).await;
    // Not shaped like AWS's own: they are found by their values.
    let (key, secret, token) =
        ("FWDECHOKEY0123456789", "echoed-secret/key+0123456789", "opaque-session-token-7f3a9c2e51d04b86");
    let params = json!({"aws.endpoint": proxy, "aws.accesskey": key, "aws.secretkey": secret, "aws.sessiontoken": token,
                        "format": "gzip", "notification.email": "ops@example.com"});
    let id = app.submit_export(QUERY, params).await;
    run_next_job(&app).await;

    let job = app.job(&id).await;
    assert_eq!(job["status"], "FAILED", "{job:#}");
    let error = job["error"].to_string();
    assert!(
        error.contains("InvalidToken") && error.contains("aws.sessiontoken"),
        "the error says what to fix: {error}"
    );
    let (_, listed) = app.get("/search/jobs").await;
    let email = unfold_qp(&email_about(&id, "FAILED").await);
    assert!(email.contains("InvalidToken"), "the email tells the error: {email}");
    let stored = files_under(&app.dir.join("data"));
    let log = logs.text();
    assert!(log.contains("InvalidToken"), "the log tells the error:\n{log}");

    let mut secrets = vec![key.to_string(), secret.to_string(), token.to_string()];
    let echoed = echoed.lock().unwrap().clone();
    assert!(
        echoed.contains(&token.to_string()) && echoed.contains(&key.to_string()),
        "the endpoint echoed them: {echoed:?}"
    );
    secrets.extend(echoed);
    for s in &secrets {
        assert!(
            !error.contains(s.as_str()) && !listed.to_string().contains(s.as_str()),
            "{s} in the job: {error}"
        );
        assert!(!email.contains(s.as_str()), "{s} in the email: {email}");
        assert!(!log.contains(s.as_str()), "{s} in the log:\n{log}");
        assert!(
            !stored.windows(s.len()).any(|w| w == s.as_bytes()),
            "{s} in a file of the data directory (the store)"
        );
    }
    assert_eq!(app.get("/healthz").await.0, 200, "the server is still up");
}

/// Every byte of every file under `dir` (the SQLite store, its WAL, the server's files).
fn files_under(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(files_under(&path));
        } else {
            all.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    all
}

/// What this thread logs from now on, through the service's own filter for `spec` (a
/// `RUST_LOG` value), for a test on a current-thread runtime, where every task of the server
/// logs on this thread (and nextest's one process per test is not needed).
struct LogCapture {
    written: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    fn start(spec: &str) -> Self {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(forwarder::telemetry::filter(spec))
            .with_ansi(false)
            .with_writer(move || SharedWriter(sink.clone()))
            .finish();
        Self { written, _guard: tracing::subscriber::set_default(subscriber) }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.written.lock().unwrap()).into_owned()
    }
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
