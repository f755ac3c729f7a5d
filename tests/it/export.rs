//! Exports through the real API and worker to LocalStack, read back with aws-sdk-s3.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

pub const QUERY: &str = "SELECT * FROM demo.ecommerce.data WHERE statusCode >= 200";
const MIB: u64 = 1 << 20;

/// Everything a user would check after an export: the job, the objects, the rows, the email.
pub async fn check_completed_export(
    app: &TestApp,
    id: &str,
    ext: &str,
    max_bytes: Option<u64>,
    password: Option<&str>,
) -> Value {
    let job = app.job(id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");
    let direct = app.direct_rows(QUERY).await;
    let (header, expected) = direct.split_first().unwrap();
    assert!(!expected.is_empty());
    assert_eq!(job["eventsSent"], expected.len() as u64);
    assert_eq!(job["eventGenerated"], expected.len() as u64);
    assert_eq!(job["extra"]["percentComplete"], 100);

    let keys = app.keys().await;
    let paths: Vec<String> =
        job["extra"]["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert_eq!(paths.len(), keys.len(), "every object is listed in extra.paths");
    let mut got: Vec<Vec<String>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key, &format!("apiv2_{id}_{:03}.{ext}", i + 1));
        assert!(paths[i].ends_with(&format!("/{}/{key}", app.bucket)), "{} vs {key}", paths[i]);
        let (bytes, content_type) = app.object(key).await;
        assert_eq!(job["extra"]["parts"][i]["bytes"], bytes.len() as u64);
        if let Some(max) = max_bytes {
            assert!(bytes.len() as u64 <= max + MIB, "part {key} is {} bytes, limit {max}", bytes.len());
        }
        let csv = match ext {
            "csv.gz" => {
                assert_eq!(content_type.as_deref(), Some("application/gzip"));
                gunzip(&bytes)
            }
            "csv.zip" => {
                assert_eq!(content_type.as_deref(), Some("application/zip"));
                let (name, csv) = unzip(&bytes, password);
                assert_eq!(name, format!("apiv2_{id}_{:03}.csv", i + 1));
                csv
            }
            _ => {
                assert_eq!(content_type.as_deref(), Some("text/csv"));
                bytes
            }
        };
        let mut records = parse_csv(&csv);
        assert!(records.len() >= 2, "a part is never empty");
        assert_eq!(&records.remove(0), header, "every part starts with the header");
        assert_eq!(job["extra"]["parts"][i]["rows"], records.len() as u64);
        got.extend(records);
    }
    let mut want = expected.to_vec();
    want.sort();
    got.sort();
    assert!(got == want, "the parts hold exactly the query's rows ({} vs {})", got.len(), want.len());
    assert_eq!(app.open_multipart_uploads().await, 0);

    let email = unfold_qp(&email_about(id, "COMPLETED").await);
    assert!(email.contains("To: ops@example.com"), "{email}");
    assert!(email.contains("COMPLETED"));
    for p in &paths {
        assert!(email.contains(p.as_str()), "the email lists {p}");
    }
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_export_rotates_by_size_and_arrives_whole() {
    let app = spawn_app(30_000).await;
    let id = app
        .submit_export(
            QUERY,
            json!({"format": "gzip", "retention.size": 0.5, "notification.email": "ops@example.com"}),
        )
        .await;
    assert_eq!(app.job(&id).await["status"], "CREATED");
    assert_eq!(app.worker.try_run_next_job().await.unwrap().unwrap().to_string(), id);
    let job = check_completed_export(&app, &id, "csv.gz", Some(500_000), None).await;
    assert!(job["extra"]["paths"].as_array().unwrap().len() >= 3, "rotated by size: {job:#}");
    // A part ends when it reaches the limit: every part but the last is at least near it.
    let parts = job["extra"]["parts"].as_array().unwrap();
    for p in &parts[..parts.len() - 1] {
        assert!(p["bytes"].as_u64().unwrap() >= 400_000, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_export_with_password_opens_only_with_it() {
    let app = spawn_app(20_000).await;
    let id = app
        .submit_export(
            QUERY,
            json!({"format": "zip", "file.password": "z1p-pa55", "retention.size": 1,
                                     "notification.email": "ops@example.com"}),
        )
        .await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    check_completed_export(&app, &id, "csv.zip", Some(1_000_000), Some("z1p-pa55")).await;
    let key = format!("apiv2_{id}_001.csv.zip");
    let (bytes, _) = app.object(&key).await;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert!(archive.by_index(0).is_err(), "no entry opens without the password");
    assert!(archive.by_index_decrypt(0, b"wrong").is_err());
    let (_, expected) = unzip(&bytes_of(&app, &key).await, Some("z1p-pa55"));

    // The tools users open it with: 7-Zip and Python's pyzipper.
    let file = app.dir.join("part.zip");
    std::fs::write(&file, bytes_of(&app, &key).await).unwrap();
    let seven = |password: &str| {
        std::process::Command::new("7z")
            .args(["x", "-so", &format!("-p{password}")])
            .arg(&file)
            .output()
            .expect("7z is on PATH (scripts/test.sh installs p7zip-full)")
    };
    let out = seven("z1p-pa55");
    assert!(out.status.success(), "7-Zip opens it: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == expected, "7-Zip reads the same CSV");
    assert!(!seven("wrong").status.success(), "7-Zip refuses a wrong password");
    let script = "import pyzipper,sys\nz=pyzipper.AESZipFile(sys.argv[1])\nz.setpassword(sys.argv[2].encode())\nsys.stdout.buffer.write(z.read(z.namelist()[0]))";
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/localstack/.venv/bin/python");
    let py = |password: &str| {
        std::process::Command::new(python).args(["-c", script]).arg(&file).arg(password).output().unwrap()
    };
    let out = py("z1p-pa55");
    assert!(out.status.success(), "pyzipper opens it: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == expected, "pyzipper reads the same CSV");
    assert!(!py("wrong").status.success(), "pyzipper refuses a wrong password");
}

async fn bytes_of(app: &TestApp, key: &str) -> Vec<u8> {
    app.object(key).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_export_uses_multipart_for_large_parts() {
    // ~6 MB of CSV in one part: more than one 5 MiB upload part.
    let app = spawn_app(20_000).await;
    let id = app
        .submit_export(
            QUERY,
            json!({"format": "plain", "retention.size": 50, "notification.email": "ops@example.com"}),
        )
        .await;
    app.worker.try_run_next_job().await.unwrap().unwrap();
    let job = check_completed_export(&app, &id, "csv", Some(50_000_000), None).await;
    assert_eq!(job["extra"]["parts"].as_array().unwrap().len(), 1);
    assert!(job["extra"]["parts"][0]["bytes"].as_u64().unwrap() > 5 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_caps_the_rows_sent() {
    let app = spawn_app(5_000).await;
    let id = app.submit_export(QUERY, json!({"format": "gzip"})).await;
    let _ = id;
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let (status, body) = app
        .submit(json!({"query": QUERY, "from": from, "to": to, "limit": 1234,
                       "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}}))
        .await;
    assert_eq!(status, 200);
    let limited = body["object"]["id"].as_str().unwrap().to_string();
    app.worker.try_run_next_job().await.unwrap();
    app.worker.try_run_next_job().await.unwrap();
    let job = app.job(&limited).await;
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(job["eventsSent"], 1234);
    let key = format!("apiv2_{limited}_001.csv.gz");
    let (bytes, _) = app.object(&key).await;
    assert_eq!(parse_csv(&gunzip(&bytes)).len(), 1 + 1234);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_job_rotates_by_time_and_stops_on_request() {
    let app = spawn_app(2_000).await;
    let (from, _) = forwarder::query::demo::time_range(app.rows);
    let (status, body) = app
        .submit(json!({"query": "SELECT * FROM demo.ecommerce.data", "from": from, "to": null,
                       "destination": {"type": "s3", "params": app.params(json!({
                           "format": "gzip", "retention.time": 1, "notification.email": "ops@example.com"}))}}))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["object"]["id"].as_str().unwrap().to_string();
    let worker = app.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });

    // The first window holds the 2,000 existing rows; the part is uploaded once 1 s old,
    // although it is far under the size limit.
    let mut paths = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        paths = app.job(&id).await["extra"]["paths"].as_array().unwrap().len();
        if paths >= 1 {
            break;
        }
    }
    assert_eq!(paths, 1, "the time-rotated part was uploaded while the job runs");
    assert_eq!(app.job(&id).await["status"], "RUNNING");

    // New rows arrive in the table: they reach the bucket in a new part.
    let now = forwarder::job::now_ms();
    forwarder::query::demo::write_csv(
        &app.catalog.parent().unwrap().join("data/ecommerce-001.csv"),
        2_000,
        300,
        now,
        1,
    )
    .unwrap();
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app.job(&id).await["eventsSent"] == 2_300 {
            break;
        }
    }
    let job = app.job(&id).await;
    assert_eq!(job["eventsSent"], 2_300, "{job:#}");
    // The new rows go to new parts (more than one when a window boundary or the 1 s
    // retention falls while they arrive).
    assert!(job["extra"]["paths"].as_array().unwrap().len() >= 2, "{job:#}");
    assert_eq!(job["extra"]["parts"][0]["rows"], 2_000);

    let (status, _) = app.get(&format!("/search/job/stop/{id}")).await;
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "STOPPED");
    let mut rows = Vec::new();
    for key in app.keys().await {
        let mut r = parse_csv(&gunzip(&app.object(&key).await.0));
        r.remove(0);
        rows.extend(r);
    }
    assert_eq!(rows.len(), 2_300, "each row exactly once");
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 2_300);
    assert!(email_for(&id).await.contains("STOPPED"));

    // Rows that arrive while it is stopped are exported once it is started again, after the
    // rows already sent and in parts numbered after theirs.
    let parts_before = job["extra"]["parts"].as_array().unwrap().len();
    forwarder::query::demo::write_csv(
        &app.catalog.parent().unwrap().join("data/ecommerce-002.csv"),
        2_300,
        200,
        forwarder::job::now_ms(),
        1,
    )
    .unwrap();
    let (status, _) = app.get(&format!("/search/job/start/{id}")).await;
    assert_eq!(status, 200);
    let worker = app.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app.job(&id).await["eventsSent"] == 2_500 {
            break;
        }
    }
    let (status, _) = app.get(&format!("/search/job/stop/{id}")).await;
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap().unwrap();
    let job = app.job(&id).await;
    assert_eq!(
        (job["status"].as_str(), job["eventsSent"].as_u64()),
        (Some("STOPPED"), Some(2_500)),
        "{job:#}"
    );
    let keys = app.keys().await;
    assert!(keys.len() > parts_before);
    assert_eq!(keys.last().unwrap(), &format!("apiv2_{id}_{:03}.csv.gz", keys.len()), "indexes continue");
    let mut rows = Vec::new();
    for key in keys {
        let mut r = parse_csv(&gunzip(&app.object(&key).await.0));
        r.remove(0);
        rows.extend(r);
    }
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 2_500, "each row exactly once, over both runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_fails_the_job_with_a_readable_error() {
    let app = spawn_app(1_000).await;
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let mut params = app.params(json!({"format": "gzip", "notification.email": "ops@example.com"}));
    params["aws.bucket"] = json!("no-such-bucket-forwarder-it");
    let (_, body) = app
        .submit(
            json!({"query": QUERY, "from": from, "to": to, "destination": {"type": "s3", "params": params}}),
        )
        .await;
    let id = body["object"]["id"].as_str().unwrap().to_string();
    app.worker.try_run_next_job().await.unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "FAILED");
    let error = job["error"][0].as_str().unwrap();
    assert!(error.contains("NoSuchBucket"), "{error}");
    assert!(!job.to_string().contains("test-secret-key-123"));
    let email = unfold_qp(&email_for(&id).await);
    assert!(email.contains("FAILED") && email.contains("NoSuchBucket"));
    // A script waiting on it with the CLI sees the failure in the exit code.
    let waited = std::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .args(["jobs", "show", &id, "--wait", "--server", &app.api])
        .env("FORWARDER_TOKEN", &app.token)
        .output()
        .unwrap();
    assert_eq!(waited.status.code(), Some(1), "{}", String::from_utf8_lossy(&waited.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_the_job_with_a_readable_error() {
    let app = spawn_app_with(1_000, |c| c.upload.max_attempts = 2).await;
    // A port nothing listens on: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let id =
        app.submit_export(QUERY, json!({"format": "gzip", "aws.endpoint": format!("http://{closed}")})).await;
    app.worker.try_run_next_job().await.unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "FAILED");
    let error = job["error"][0].as_str().unwrap();
    assert!(
        error.contains("could not reach the S3 endpoint") && error.to_lowercase().contains("refused"),
        "{error}"
    );
    assert!(!error.contains("DispatchFailure") && !error.contains("{"), "no debug dump: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_overwrites_another_object_and_leaves_no_upload_behind() {
    // 20,000 plain rows: one ~6 MB part, uploaded in two parts of a multipart upload whose
    // completion must refuse to replace the object already at that key.
    let app = spawn_app(20_000).await;
    let id = app.submit_export(QUERY, json!({"format": "plain", "retention.size": 50})).await;
    let key = format!("apiv2_{id}_001.csv");
    app.s3
        .put_object()
        .bucket(&app.bucket)
        .key(&key)
        .body(b"someone else's file".to_vec().into())
        .send()
        .await
        .unwrap();
    app.worker.try_run_next_job().await.unwrap();
    let job = app.job(&id).await;
    assert_eq!(job["status"], "FAILED", "{job:#}");
    let error = job["error"][0].as_str().unwrap();
    assert!(error.contains("PreconditionFailed") && error.contains("not written by this job"), "{job:#}");
    assert_eq!(app.object(&key).await.0, b"someone else's file");
    assert_eq!(app.open_multipart_uploads().await, 0, "the multipart upload was aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_an_earlier_run_left_unrecorded_is_replaced() {
    // A worker that died between completing part 1 and recording it left an object with this
    // job's id in its metadata; the next run writes part 1 again and must not fail on it.
    // Plain: a multipart upload (~6 MB); gzip: one put.
    for (format, ext) in [("plain", "csv"), ("gzip", "csv.gz")] {
        let app = spawn_app(20_000).await;
        let params = json!({"format": format, "retention.size": 50, "notification.email": "ops@example.com"});
        let id = app.submit_export(QUERY, params).await;
        let key = format!("apiv2_{id}_001.{ext}");
        app.s3
            .put_object()
            .bucket(&app.bucket)
            .key(&key)
            .metadata("forwarder-job", &id)
            .body(b"rows of an earlier run\n".to_vec().into())
            .send()
            .await
            .unwrap();
        app.worker.try_run_next_job().await.unwrap();
        check_completed_export(&app, &id, ext, None, None).await;
        assert_eq!(app.open_multipart_uploads().await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_and_queue_nothing() {
    let app = spawn_app(100).await;
    let cases = [
        (json!({"query": "SELECT 1", "destination": {"type": "s3", "params": {"aws.bucket": "abc"}}}), 205),
        (json!({"query": "SELECT 1", "destination": {"type": "s3", "params": {"format": "rar"}}}), 210),
        (
            json!({"query": "SELECT 1", "destination": {"type": "s3", "params": {"format": "gzip", "file.password": "x"}}}),
            211,
        ),
        (json!({"query": "SELEC nonsense", "destination": {"type": "s3", "params": {}}}), 101),
        (json!({"query": "SELECT * FROM nowhere.table", "destination": {"type": "s3", "params": {}}}), 101),
        (
            json!({"query": "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "destination": {"type": "s3"}}),
            101,
        ),
        (json!({"query": "SELECT 1"}), 200),
    ];
    for (body, code) in cases {
        let (status, answer) = app.submit(body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["status"], code, "{body} -> {answer}");
        assert!(!answer["msg"].as_str().unwrap().is_empty());
    }
    // Continuous (no `to`) over no time column: every window would resend the same rows.
    let (status, answer) = app
        .submit(json!({"query": "SELECT 1 AS one", "from": 1767225600, "destination": {"type": "s3"}}))
        .await;
    assert_eq!((status.as_u16(), answer["status"].as_u64()), (400, Some(101)), "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(
        msg.contains("continuous") && msg.contains("demo.ecommerce.data") && msg.contains("Give `to`"),
        "{msg}"
    );
    let (_, list) = app.get("/search/jobs").await;
    assert_eq!(list["object"].as_array().unwrap().len(), 0, "nothing was queued");
    let (status, _) = app.get(&format!("/search/job/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_restart_and_list_by_status() {
    let app = spawn_app(1_000).await;
    let id = app.submit_export(QUERY, json!({"format": "gzip"})).await;
    app.worker.try_run_next_job().await.unwrap();
    let before = app.job(&id).await;
    // A second server on the same data directory sees the same job.
    let mut config = forwarder::config::Config {
        data_dir: app.dir.join("data"),
        catalog: Some(app.catalog.clone()),
        ..Default::default()
    };
    config.worker.enabled = false;
    let again = forwarder::app::App::build(config).await.unwrap();
    let job = again.state.store.get(None, id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(
        forwarder::job::job_view(&job).extra.paths,
        serde_json::from_value::<Vec<String>>(before["extra"]["paths"].clone()).unwrap()
    );
    let (_, list) = app.get("/search/jobs?status=COMPLETED").await;
    assert_eq!(list["object"][0]["id"], id.as_str());
    let (_, list) = app.get("/search/jobs?status=RUNNING").await;
    assert_eq!(list["object"].as_array().unwrap().len(), 0);
    // Devo's SDK filters by type and name in the path.
    let name = before["friendlyName"].as_str().unwrap();
    for (path, found) in [
        ("/search/jobs/s3".to_string(), 1),
        (format!("/search/jobs/s3/{name}"), 1),
        ("/search/jobs/s3/nope".into(), 0),
        ("/search/jobs/kafka".into(), 0),
    ] {
        let (status, list) = app.get(&path).await;
        assert_eq!(
            (status.as_u16(), list["object"].as_array().map(Vec::len)),
            (200, Some(found)),
            "{path}: {list}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_the_job_with_a_readable_error_and_leave_nothing_behind() {
    use forwarder::demo::{ACCESS_KEY, BUCKET, SECRET_KEY};
    // LocalStack takes any key; s3s (the demo's endpoint) checks every SigV4 signature.
    // 20,000 plain rows make a ~6 MB part: a multipart upload when the keys are right.
    let app = spawn_app(20_000).await;
    let root = app.dir.join("s3s");
    let stop = tokio_util::sync::CancellationToken::new();
    let endpoint = format!("http://{}", forwarder::demo::serve_s3(&root, stop.clone()).await.unwrap());
    let run = |access: &'static str, secret: &'static str| {
        let (app, endpoint) = (&app, endpoint.clone());
        async move {
            let id = app
                .submit_export(
                    QUERY,
                    json!({"format": "plain", "aws.endpoint": endpoint, "aws.bucket": BUCKET,
                                            "aws.accesskey": access, "aws.secretkey": secret}),
                )
                .await;
            app.worker.try_run_next_job().await.unwrap();
            (id.clone(), app.job(&id).await)
        }
    };

    let (good, job) = run(ACCESS_KEY, SECRET_KEY).await;
    assert_eq!(job["status"], "COMPLETED", "the right keys work: {job:#}");
    for (access, secret, code) in [
        (ACCESS_KEY, "not-the-secret-key", "SignatureDoesNotMatch"),
        ("AKIAUNKNOWN", SECRET_KEY, "NotSignedUp"),
    ] {
        let (_, job) = run(access, secret).await;
        assert_eq!(job["status"], "FAILED", "{job:#}");
        let error = job["error"][0].as_str().unwrap();
        assert!(error.contains(code) && error.contains("check aws.accesskey, aws.secretkey"), "{error}");
        assert!(
            !job.to_string().contains("not-the-secret-key") && !job.to_string().contains(SECRET_KEY),
            "{job:#}"
        );
    }
    // Only the good job's object is in the bucket: no part file, no upload left open.
    let files: Vec<String> = std::fs::read_dir(root.join(BUCKET))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec![format!("apiv2_{good}_001.csv")], "{files:?}");
    // s3s-fs keeps an open upload's state and parts beside the buckets as `.upload*` files.
    let leftovers: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "no multipart upload left open: {leftovers:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_in_an_s3_bucket_exports_like_a_local_one() {
    // The demo table's file in a bucket, and a catalog that names it by its s3:// URL.
    let rows = 5_000;
    let local = std::env::temp_dir().join(format!("forwarder-it-src-{}", uuid::Uuid::new_v4()));
    forwarder::query::demo::create(&local, rows).unwrap();
    let s3 = s3_client();
    let source = format!("it-src-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    s3.create_bucket().bucket(&source).send().await.unwrap();
    let csv = std::fs::read(local.join("data").join("ecommerce-000.csv")).unwrap();
    s3.put_object().bucket(&source).key("weblogs/ecommerce-000.csv").body(csv.into()).send().await.unwrap();
    let catalog = local.join("s3-catalog.toml");
    std::fs::write(
        &catalog,
        format!("[[tables]]\nname = \"demo.ecommerce.data\"\nlocation = \"s3://{source}/weblogs/\"\nformat = \"csv\"\ntime_column = \"eventdate\"\n"),
    )
    .unwrap();

    let app = spawn_app_with(rows, |c| {
        c.catalog = Some(catalog);
        c.s3.endpoint = Some(env("FORWARDER_TEST_S3_ENDPOINT"));
        c.s3.region = Some("us-east-1".into());
        c.s3.access_key = Some("test".into());
        c.s3.secret_key = Some(forwarder::secret::Secret::new("test"));
    })
    .await;
    let id = app
        .submit_export(
            QUERY,
            json!({"format": "gzip", "retention.size": 0.2, "notification.email": "ops@example.com"}),
        )
        .await;
    app.worker.try_run_next_job().await.unwrap();
    // Compared with the same query over the local copy of the file.
    check_completed_export(&app, &id, "csv.gz", Some(200_000), None).await;
}
