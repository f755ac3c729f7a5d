//! `spawn_app()`: a Forwarder on a random port with its own data directory, demo table,
//! bucket and SMTP settings; helpers to read the bucket and the mailbox back.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use forwarder::app::App;
use forwarder::config::Config;
use forwarder::query::{Catalog, DataFusionEngine, QueryEngine, QueryWindow, demo};
use forwarder::store::JobStore;
use forwarder::worker::Worker;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts LocalStack, the SMTP servers and PostgreSQL")
    })
}

pub struct TestApp {
    pub api: String,
    /// Sends the server's initial token with every request.
    pub http: reqwest::Client,
    pub token: String,
    pub worker: Arc<Worker>,
    pub store: Arc<dyn JobStore>,
    pub s3: Client,
    pub bucket: String,
    pub dir: PathBuf,
    pub catalog: PathBuf,
    pub rows: u64,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A new, empty database on the tests' PostgreSQL server (one per test: workers claim any
/// job in their store); its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection as _;
    let admin = env("FORWARDER_TEST_POSTGRES_URL");
    let name = format!("forwarder_it_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let (server, _) = admin.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

pub fn s3_client() -> Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(env("FORWARDER_TEST_S3_ENDPOINT"))
        .force_path_style(true)
        .http_client(forwarder::upload::s3::https_client())
        .build();
    Client::from_conf(conf)
}

/// A server (worker not looping: tests call `worker.try_run_next_job()`), a demo table of
/// `rows` rows, and a fresh bucket.
pub async fn spawn_app(rows: u64) -> TestApp {
    spawn_app_with(rows, |_| {}).await
}

pub async fn spawn_app_with(rows: u64, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn,forwarder=info").try_init();
    let dir = std::env::temp_dir().join(format!("forwarder-it-{}", uuid::Uuid::new_v4()));
    let catalog = demo::create(&dir.join("demo"), rows).unwrap();
    let s3 = s3_client();
    let bucket = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    start_app(dir, catalog, rows, bucket, tweak).await
}

/// As [`spawn_app`], with the demo table as Parquet (`forwarder gen-demo --parquet`): the
/// source that time slices cut (`worker.min_slice_mb`).
pub async fn spawn_app_on_parquet(rows: u64) -> TestApp {
    let dir = std::env::temp_dir().join(format!("forwarder-it-{}", uuid::Uuid::new_v4()));
    let catalog = forwarder::query::demo_parquet::create_parquet(&dir.join("demo"), rows).await.unwrap();
    let s3 = s3_client();
    let bucket = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    start_app(dir, catalog, rows, bucket, |_| {}).await
}

fn test_config(dir: &std::path::Path, catalog: &std::path::Path) -> Config {
    let mut config =
        Config { data_dir: dir.join("data"), catalog: Some(catalog.to_path_buf()), ..Config::default() };
    config.worker.enabled = false;
    config.worker.lease = Duration::from_secs(5);
    config.worker.poll_interval = Duration::from_millis(200);
    // Small operator bounds so that tests can use small parts and short times.
    config.limits.retention_size_mb_min = 0.01;
    config.limits.retention_time_secs_min = 1;
    config.upload.part_size_mib = 5;
    // LocalStack and the tests' own proxies run on loopback.
    config.s3.allowed_endpoints = vec!["127.0.0.0/8".into()];
    config.smtp.url = Some(env("FORWARDER_TEST_SMTP_URL"));
    config.smtp.max_attempts = 2;
    config
}

async fn start_app(
    dir: PathBuf,
    catalog: PathBuf,
    rows: u64,
    bucket: String,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(&dir, &catalog);
    tweak(&mut config);
    let token_file = forwarder::app::initial_token_path(&config);
    let app = App::build(config).await.unwrap();
    let (worker, store) = (app.worker.clone(), app.state.store.clone());
    // The token the server created on its first start, as a new user would use it.
    let token = std::fs::read_to_string(token_file).unwrap().trim().to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
    let listener = forwarder::api::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(listener, shutdown.clone()));
    TestApp { api, http, token, worker, store, s3: s3_client(), bucket, dir, catalog, rows, shutdown }
}

impl TestApp {
    /// Stops this server and starts another on the same data directory, table and bucket.
    pub async fn restart(self) -> TestApp {
        self.shutdown.cancel();
        let (dir, catalog, rows, bucket) =
            (self.dir.clone(), self.catalog.clone(), self.rows, self.bucket.clone());
        drop(self);
        start_app(dir, catalog, rows, bucket, |_| {}).await
    }

    /// Another server, as on another machine (a data directory of its own), on this one's
    /// table and bucket, configured by `tweak` (give it this one's `store.url` to share the
    /// job store). Its callers use this server's token, which the shared store already holds.
    pub async fn peer(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = std::env::temp_dir().join(format!("forwarder-it-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data").join("initial-token"), &self.token).unwrap();
        start_app(dir, self.catalog.clone(), self.rows, self.bucket.clone(), tweak).await
    }

    /// Waits until the job has uploaded at least `parts` parts; returns its view then.
    pub async fn wait_for_parts(&self, id: &str, parts: usize) -> Value {
        for _ in 0..300 {
            let job = self.job(id).await;
            if job["extra"]["parts"].as_array().map_or(0, Vec::len) >= parts {
                return job;
            }
            assert!(
                matches!(job["status"].as_str(), Some("CREATED" | "RUNNING")),
                "job ended early: {job:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not upload {parts} parts in 15 s");
    }

    /// The value of the `/metrics` line that starts with `line_start` (a gauge's name and labels).
    pub async fn gauge(&self, line_start: &str) -> i64 {
        let text = self.http.get(format!("{}/metrics", self.api)).send().await.unwrap().text().await.unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("{line_start}: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    pub async fn metrics(&self) -> prometheus_parse::Scrape {
        let text = self.http.get(format!("{}/metrics", self.api)).send().await.unwrap().text().await.unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }
    /// Destination params for this app's bucket on LocalStack, plus `extra`.
    pub fn params(&self, extra: Value) -> Value {
        let mut p = json!({
            "aws.bucket": self.bucket, "aws.region": "us-east-1",
            "aws.accesskey": "test", "aws.secretkey": "test-secret-key-123",
            "aws.endpoint": env("FORWARDER_TEST_S3_ENDPOINT"), "aws.pathstyle": true,
        });
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    }

    pub async fn submit(&self, body: Value) -> (reqwest::StatusCode, Value) {
        let r = self.http.post(format!("{}/search/query", self.api)).json(&body).send().await.unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// Submits an export of the whole demo table and returns the job id.
    pub async fn submit_export(&self, query: &str, params: Value) -> String {
        let (from, to) = demo::time_range(self.rows);
        let (status, body) = self
            .submit(json!({"query": query, "from": from, "to": to,
                           "destination": {"type": "s3", "params": self.params(params)}}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["object"]["id"].as_str().unwrap().to_string()
    }

    pub async fn job(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/search/job/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body["object"].clone()
    }

    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, Value) {
        let r = self.http.get(format!("{}{path}", self.api)).send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn keys(&self) -> Vec<String> {
        let mut pages = self.s3.list_objects_v2().bucket(&self.bucket).into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            keys.extend(page.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_string)));
        }
        // In part order: indexes grow past 999 by getting longer (`999`, `1000`).
        keys.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        keys
    }

    pub async fn object(&self, key: &str) -> (Vec<u8>, Option<String>) {
        let out = self.s3.get_object().bucket(&self.bucket).key(key).send().await.unwrap();
        let ct = out.content_type().map(str::to_string);
        (out.body.collect().await.unwrap().into_bytes().to_vec(), ct)
    }

    pub async fn open_multipart_uploads(&self) -> usize {
        let out = self.s3.list_multipart_uploads().bucket(&self.bucket).send().await.unwrap();
        out.uploads().len()
    }

    /// The query's rows run directly on the engine, as CSV records (header first).
    pub async fn direct_rows(&self, query: &str) -> Vec<Vec<String>> {
        let engine = DataFusionEngine::new(Catalog::load(&self.catalog).unwrap());
        let (from, to) = demo::time_range(self.rows);
        let mut run =
            engine.run(query, QueryWindow { from_ms: Some(from), to_ms: Some(to) }, 0, None).await.unwrap();
        let mut csv = forwarder::encode::csv::header(&run.stream.schema());
        while let Some(batch) = run.stream.next().await {
            let batch = batch.unwrap();
            let mut rows = forwarder::encode::csv::BatchRows::new(&batch).unwrap();
            while rows.next_row(&mut csv).unwrap() {}
        }
        parse_csv(&csv)
    }
}

/// A JSON value as the CSV encoder writes it (timestamps `YYYY-MM-DD hh:mm:ss.mmm`).
pub fn json_as_csv_field(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if s.ends_with('Z') && s.get(10..11) == Some("T") => {
            s.trim_end_matches('Z').replacen('T', " ", 1)
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Submits `query` with each destination `params` and checks that every one is refused with
/// HTTP 400, its Devo-style code and a message containing the needle, and that nothing is queued.
pub async fn assert_refused_and_nothing_queued(app: &TestApp, query: &str, cases: &[(Value, u16, &str)]) {
    let (from, to) = demo::time_range(app.rows);
    for (params, code, needle) in cases {
        let destination = json!({"type": "s3", "params": app.params(params.clone())});
        let (status, body) =
            app.submit(json!({"query": query, "from": from, "to": to, "destination": destination})).await;
        assert_eq!(status, 400, "{params}: {body}");
        assert_eq!(body["status"], *code, "{params}: {body}");
        assert!(body["msg"].as_str().unwrap().contains(needle), "{params}: {body}");
    }
    let (_, jobs) = app.get("/search/jobs").await;
    assert_eq!(jobs["object"].as_array().unwrap().len(), 0, "nothing queued: {jobs}");
    assert!(app.worker.try_run_next_job().await.unwrap().is_none());
}

pub fn parse_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

pub fn unzip(bytes: &[u8], password: Option<&str>) -> (String, Vec<u8>) {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(archive.len(), 1, "one entry per zip part");
    let mut entry = match password {
        Some(p) => archive.by_index_decrypt(0, p.as_bytes()).unwrap(),
        None => archive.by_index(0).unwrap(),
    };
    let mut out = Vec::new();
    entry.read_to_end(&mut out).unwrap();
    (entry.name().unwrap().to_string(), out)
}

/// Waits for an email about `job_id` in the test SMTP server's Maildir.
pub async fn email_for(job_id: &str) -> String {
    email_about(job_id, "").await
}

/// Waits for the email about `job_id` whose text also holds `needle` (a status, say).
pub async fn email_about(job_id: &str, needle: &str) -> String {
    let dir = PathBuf::from(env("FORWARDER_TEST_MAILDIR")).join("new");
    for _ in 0..100 {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                if text.contains(job_id) && text.contains(needle) {
                    return text;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no email about job {job_id} with {needle:?} arrived in {}", dir.display());
}

/// Undoes quoted-printable soft line breaks and `=3D`, so that URLs can be searched for.
pub fn unfold_qp(text: &str) -> String {
    text.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
}

/// Runs `forwarder auth …` on the app's data directory.
/// The API key and secret `forwarder auth create-key` printed.
pub fn api_key_from(printed: &str) -> (String, String) {
    let field =
        |name: &str| printed.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap().to_string();
    (field("apikey"), field("apisecret"))
}

pub fn auth_cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .arg("auth")
        .args(args)
        .env("FORWARDER_DATA_DIR", app.dir.join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success() || args[0] == "revoke",
        "forwarder auth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
}
