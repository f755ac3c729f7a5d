//! Whole exports through the API and the worker to each destination type, read back with the
//! store's own client: the rows, the parts, the paths in the store's URL form, the email.

use serde_json::json;

use crate::backends::Backend;
use crate::common::*;
use crate::export::QUERY;

async fn export_arrives_whole(backend: Backend) {
    let root = match &backend {
        Backend::File { root, .. } => Some(root.clone()),
        _ => None,
    };
    let app = spawn_app_with(30_000, |c| c.destinations.file.root = root).await;
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let params = json!({"format": "gzip", "retention.size": 0.5, "notification.email": "ops@example.com"});
    let (status, body) = app
        .submit(json!({"query": QUERY, "from": from, "to": to, "destination": backend.destination(params)}))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["object"]["id"].as_str().unwrap().to_string();
    assert_eq!(app.worker.try_run_next_job().await.unwrap().unwrap().to_string(), id);

    let job = app.job(&id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");
    assert_eq!(job["type"], backend.name());
    let direct = app.direct_rows(QUERY).await;
    let (header, expected) = direct.split_first().unwrap();
    assert_eq!(job["eventsSent"], expected.len() as u64);
    let keys = backend.keys().await;
    assert!(keys.len() >= 3, "rotated by size: {keys:?}");
    let paths = job["extra"]["paths"].as_array().unwrap();
    assert_eq!(paths.len(), keys.len(), "every object is listed in extra.paths");
    let mut got = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key, &format!("{}apiv2_{id}_{:03}.csv.gz", backend.prefix(), i + 1));
        assert_eq!(paths[i], backend.url(key));
        let bytes = backend.read(key).await.unwrap();
        assert_eq!(job["extra"]["parts"][i]["bytes"], bytes.len() as u64);
        assert!(bytes.len() <= 500_000 + (1 << 20), "part {key} is {} bytes", bytes.len());
        let mut records = parse_csv(&gunzip(&bytes));
        assert_eq!(&records.remove(0), header, "every part starts with the header");
        assert_eq!(job["extra"]["parts"][i]["rows"], records.len() as u64);
        got.extend(records);
    }
    let mut want = expected.to_vec();
    want.sort();
    got.sort();
    assert!(got == want, "the parts hold exactly the query's rows ({} vs {})", got.len(), want.len());
    assert_eq!(backend.open_uploads().await, 0);

    let email = unfold_qp(&email_about(&id, "COMPLETED").await);
    assert!(email.contains("To: ops@example.com"), "{email}");
    for p in paths {
        assert!(email.contains(p.as_str().unwrap()), "the email lists {p}");
    }
    let metrics = app.metrics().await;
    let calls = metrics
        .samples
        .iter()
        .filter(|s| {
            s.metric == "forwarder_destination_request_seconds_count"
                && s.labels.get("destination") == Some(backend.name())
        })
        .count();
    assert!(calls > 0, "calls are metered by destination type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_export_arrives_whole() {
    export_arrives_whole(Backend::file()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_export_arrives_whole() {
    export_arrives_whole(Backend::azure().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_export_through_the_seam_arrives_whole() {
    export_arrives_whole(Backend::s3().await).await
}

/// A file destination refuses a directory that leaves the root through a symlink, and fails
/// the job with a message saying so; nothing is written outside the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_destination_never_follows_a_symlink_out_of_its_root() {
    let backend = Backend::file();
    let Backend::File { root, .. } = &backend else { unreachable!() };
    let outside = std::env::temp_dir().join(format!("forwarder-outside-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("exports")).unwrap();
    let root = root.clone();
    let app = spawn_app_with(2_000, |c| c.destinations.file.root = Some(root)).await;
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let (status, body) = app
        .submit(json!({"query": QUERY, "from": from, "to": to,
                       "destination": backend.destination(json!({"format": "gzip"}))}))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["object"]["id"].as_str().unwrap().to_string();
    app.worker.try_run_next_job().await.unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "FAILED", "{job:#}");
    assert!(job["error"].to_string().contains("symlink"), "{job:#}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was written outside the root");
}

/// A wrong Azure account key fails the job with a message that says what to check, and the
/// key appears in no response, error, email, log line (at trace level) or database file; nor
/// does a shared access signature's `sig`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_azure_key_fails_the_job_readably_and_stays_secret() {
    use base64::Engine as _;
    let logs = crate::auth::LogBuffer::capture();
    let backend = Backend::azure().await;
    let app = spawn_app(2_000).await;
    let wrong =
        base64::engine::general_purpose::STANDARD.encode("not-the-account-key-but-a-secret-0123456789");
    let mut destination =
        backend.destination(json!({"format": "gzip", "notification.email": "ops@example.com"}));
    destination["params"]["azure.accesskey"] = json!(wrong);
    let (id, job) = run_failing(&app, &destination).await;
    let error = job["error"].to_string();
    assert!(error.contains("Azure") && error.contains("azure.accesskey"), "{error}");
    let email = email_about(&id, "FAILED").await;

    // A shared access signature that Azurite does not accept: its `sig` stays as secret.
    let sig = format!("SASSIG{}", uuid::Uuid::new_v4().simple());
    let mut with_sas = destination.clone();
    let params = with_sas["params"].as_object_mut().unwrap();
    params.remove("azure.accesskey");
    params.insert("azure.sastoken".into(), json!(format!("sv=2022-11-02&ss=b&srt=co&sp=rwdlac&sig={sig}")));
    let (sas_id, sas_job) = run_failing(&app, &with_sas).await;

    let (_, listed) = app.get("/search/jobs").await;
    let logs = logs.text();
    assert!(logs.contains(&id) && logs.contains(&sas_id), "the log was captured");
    for text in [job.to_string(), sas_job.to_string(), email, listed.to_string(), logs] {
        for secret in [&wrong, &sig] {
            assert!(!text.contains(secret.as_str()), "a secret leaked: {text}");
        }
    }
    for entry in std::fs::read_dir(app.dir.join("data")).unwrap().flatten() {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            for secret in [&wrong, &sig] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{}",
                    entry.path().display()
                );
            }
        }
    }
    assert!(backend.keys().await.is_empty());
}

/// Submits an export of [`QUERY`] to `destination`, runs it, and returns its id and its status,
/// which must be FAILED.
async fn run_failing(app: &TestApp, destination: &serde_json::Value) -> (String, serde_json::Value) {
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let (status, body) =
        app.submit(json!({"query": QUERY, "from": from, "to": to, "destination": destination})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["object"]["id"].as_str().unwrap().to_string();
    app.worker.try_run_next_job().await.unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "FAILED", "{job:#}");
    (id, job)
}
