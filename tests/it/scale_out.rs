//! Several servers, as on several machines, sharing one PostgreSQL job store: a job submitted
//! to one is run by another, and a worker that dies mid-job is taken over with no row lost or
//! repeated.

use std::path::PathBuf;
use std::time::Duration;

use forwarder::config::Config;
use forwarder::secret::Secret;
use serde_json::json;

use crate::common::*;
use crate::export::{QUERY, check_completed_export};

/// Settings every server of one test shares: the database, the key that seals the jobs'
/// secrets (copied to every machine in a real deployment) and a short lease.
fn shared(url: String, key_file: PathBuf) -> impl Fn(&mut Config) + Clone {
    move |c: &mut Config| {
        c.store.url = Some(Secret::new(url.clone()));
        c.store.key_file = Some(key_file.clone());
        c.worker.lease = Duration::from_secs(1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_mid_job_is_taken_over_by_another_machine() {
    let key_file = std::env::temp_dir().join(format!("forwarder-it-key-{}", uuid::Uuid::new_v4()));
    let settings = shared(fresh_postgres_database().await, key_file);
    let a = spawn_app_with(30_000, settings.clone()).await;
    let id = a
        .submit_export(
            QUERY,
            json!({"format": "gzip", "retention.size": 0.01, "notification.email": "ops@example.com"}),
        )
        .await;
    let worker = a.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });
    a.wait_for_parts(&id, 3).await;
    // Machine A dies: no hand-back, no more heartbeats, whatever was in flight is cut off.
    run.abort();
    let _ = run.await;
    // It died in the middle of a part's multipart upload, which stays open in the bucket.
    let done = a.job(&id).await["extra"]["parts"].as_array().unwrap().len();
    let first_key = a.job(&id).await["extra"]["parts"][0]["key"].as_str().unwrap().to_string();
    let open_key = first_key.replace("_001.csv.gz", &format!("_{:03}.csv.gz", done + 1));
    let left = a.s3.create_multipart_upload().bucket(&a.bucket).key(&open_key).send().await.unwrap();
    a.s3.upload_part()
        .bucket(&a.bucket)
        .key(&open_key)
        .upload_id(left.upload_id().unwrap())
        .part_number(1)
        .body(vec![b'x'; 1024].into())
        .send()
        .await
        .unwrap();
    assert_eq!(a.open_multipart_uploads().await, 1);

    let b = a.peer(settings).await;
    let seen = b.job(&id).await;
    assert_eq!(seen["status"], "RUNNING", "B sees A's job, still leased to A: {seen:#}");
    assert!(seen["extra"]["parts"].as_array().unwrap().len() >= 3, "and its checkpoints");
    let mut taken = None;
    for _ in 0..100 {
        taken = b.worker.try_run_next_job().await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(taken.map(|j| j.to_string()), Some(id.clone()), "B takes the job over once A's lease expires");
    // Exactly the query's rows, every part index once, the email sent: by B, seen from A.
    check_completed_export(&b, &id, "csv.gz", Some(10_000), None).await;
    assert_eq!(a.job(&id).await["extra"], b.job(&id).await["extra"]);
    assert_eq!(b.open_multipart_uploads().await, 0, "B aborted the upload A left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_sharing_a_store_share_its_jobs_and_credentials() {
    let key_file = std::env::temp_dir().join(format!("forwarder-it-key-{}", uuid::Uuid::new_v4()));
    let url = fresh_postgres_database().await;
    let settings = shared(url.clone(), key_file.clone());
    let a = spawn_app_with(2_000, settings.clone()).await;
    let b = a.peer(settings).await;
    // Submitted to B with A's token (one credential store), listed by A, run by A.
    let id = b
        .submit_export(
            QUERY,
            json!({"format": "zip", "file.password": "pw-shared-1", "notification.email": "ops@example.com"}),
        )
        .await;
    let (status, listed) = a.get("/search/jobs").await;
    assert_eq!(status, 200);
    assert!(listed["object"].to_string().contains(&id), "{listed}");
    assert_eq!(a.worker.try_run_next_job().await.unwrap().map(|j| j.to_string()), Some(id.clone()));
    check_completed_export(&b, &id, "csv.zip", None, Some("pw-shared-1")).await;
    assert_eq!(b.worker.try_run_next_job().await.unwrap(), None, "nothing is run twice");

    // A signed submission accepted by A and sent again to B is refused: they share what was used.
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .args(["auth", "create-key", "--domain", "acme"])
        .env("FORWARDER_DATA_DIR", a.dir.join("data"))
        .env("FORWARDER_STORE__URL", &url)
        .env("FORWARDER_STORE__KEY_FILE", &key_file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&created.stdout);
    let (key, secret) = api_key_from(&out);
    let (from, to) = forwarder::query::demo::time_range(a.rows);
    let body = json!({"query": QUERY, "from": from, "to": to, "destination": {"type": "s3", "params": a.params(json!({"format": "gzip"}))}}).to_string();
    let now = forwarder::job::now_ms();
    let (status, answer) = crate::auth::signed(&a, "POST", "/search/query", &body, &key, &secret, now).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = crate::auth::signed(&b, "POST", "/search/query", &body, &key, &secret, now).await;
    assert_eq!(status, 401, "replayed to another server: {answer}");
    assert!(answer["msg"].as_str().unwrap().contains("already used"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_with_another_server_key_is_refused_at_start() {
    let url = fresh_postgres_database().await;
    let key_a = std::env::temp_dir().join(format!("forwarder-it-key-{}", uuid::Uuid::new_v4()));
    let a = spawn_app_with(100, shared(url.clone(), key_a)).await;
    // Machine B forgot to copy the key file: it would make its own, and open no job's secrets.
    let dir = std::env::temp_dir().join(format!("forwarder-it-{}", uuid::Uuid::new_v4()));
    let mut config =
        Config { data_dir: dir.join("data"), catalog: Some(a.catalog.clone()), ..Config::default() };
    config.store.url = Some(Secret::new(url));
    config.store.key_file = Some(dir.join("server.key"));
    let error = forwarder::app::App::build(config).await.err().expect("refused").to_string();
    assert!(error.contains("is not the one this job store was set up with"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_was_taken_stops_at_once() {
    let url = fresh_postgres_database().await;
    let key_file = std::env::temp_dir().join(format!("forwarder-it-key-{}", uuid::Uuid::new_v4()));
    let a = spawn_app_with(60_000, shared(url.clone(), key_file)).await;
    // One plain part of ~16 MB: a multipart upload under way when the lease goes.
    let id = a.submit_export(QUERY, json!({"format": "plain", "retention.size": 50})).await;
    let worker = a.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });
    for _ in 0..300 {
        if a.open_multipart_uploads().await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.open_multipart_uploads().await > 0, "the part's upload started");
    // A stall long enough for the lease to pass to machine B, as the store sees it.
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE jobs SET lease_owner = 'machine-b', lease_until = lease_until + 3600000 WHERE id = $1",
    )
    .bind(&id)
    .execute(&db)
    .await
    .unwrap();
    // A's next heartbeat finds out: it aborts its upload rather than finish a part that is
    // B's to write, and leaves the job to B.
    tokio::time::timeout(Duration::from_secs(10), run).await.expect("the run stopped").unwrap().unwrap();
    assert_eq!(a.job(&id).await["status"], "RUNNING", "still B's to finish");
    assert!(a.keys().await.is_empty(), "A completed no part after losing the job");
    assert_eq!(a.open_multipart_uploads().await, 0, "and left no upload open");
}
