//! `forwarder demo`: the whole path on one machine with nothing else installed. Starts an
//! S3-compatible endpoint inside the process (s3s-fs, objects as files), the API and its
//! worker, submits an export of the demo table through the HTTP API like any client, follows
//! it, and prints the job, its paths and where the email went.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;
use crate::query::demo;

pub const ACCESS_KEY: &str = "forwarder-demo";
pub const SECRET_KEY: &str = "forwarder-demo-secret";
pub const BUCKET: &str = "forwarder-demo";

/// Serves an S3-compatible endpoint over `root` (one directory per bucket) until `shutdown`.
pub async fn serve_s3(root: &Path, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    std::fs::create_dir_all(root.join(BUCKET))?;
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let socket = tokio::select! {
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                () = shutdown.cancelled() => break,
            };
            let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    Ok(addr)
}

pub struct DemoOptions {
    pub dir: PathBuf,
    pub rows: u64,
    pub format: String,
    pub part_mb: f64,
    /// Serve on after the export, until Ctrl-C.
    pub keep: bool,
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let s3_addr = serve_s3(&opts.dir.join("s3"), shutdown.clone()).await?;
    let endpoint = format!("http://{s3_addr}");
    println!(
        "S3-compatible endpoint (in process, s3s-fs): {endpoint}, files under {}",
        opts.dir.join("s3").display()
    );

    let mut config = Config { data_dir: opts.dir.join("data"), demo_rows: opts.rows, ..Config::default() };
    // Small parts so that the demo shows rotation; operators keep Devo's 50-500 MB.
    config.limits.retention_size_mb_min = 1.0;
    // The demo's S3 endpoint runs in this process, on loopback.
    config.s3.allowed_endpoints = vec!["127.0.0.1".into()];
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    let app = App::build(config.clone()).await?;
    let server = tokio::spawn(app.run(listener, shutdown.clone()));
    println!("Forwarder API: {api}");

    let (from, to) = demo::time_range(opts.rows);
    let body = json!({
        "query": "SELECT * FROM demo.ecommerce.data",
        "from": from / 1000,
        "to": to.div_euclid(1000) + 1,
        "destination": {"type": "s3", "params": {
            "aws.bucket": BUCKET, "aws.region": "us-east-1",
            "aws.accesskey": ACCESS_KEY, "aws.secretkey": SECRET_KEY,
            "aws.endpoint": endpoint, "aws.pathstyle": true,
            "format": opts.format, "retention.size": opts.part_mb,
            "notification.email": "ops@example.com",
        }}
    });
    // The token the server created on its first start (see README, Authentication).
    let token_file = crate::app::initial_token_path(&config);
    let token =
        std::fs::read_to_string(&token_file).with_context(|| format!("reading {}", token_file.display()))?;
    println!("API token: in {} (send it as Authorization: Bearer <token>)", token_file.display());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", token.trim()).parse()?);
    let http = reqwest::Client::builder().default_headers(headers).build()?;
    let mut shown = body.clone();
    shown["destination"]["params"]["aws.secretkey"] = json!("***");
    println!("POST /search/query\n{}", serde_json::to_string_pretty(&shown)?);
    println!(
        "(the demo allows parts from 1 MB; `forwarder serve` keeps Devo's 50-500 MB unless [limits] says otherwise)"
    );
    let answer: Value = http.post(format!("{api}/search/query")).json(&body).send().await?.json().await?;
    let id = answer["object"]["id"].as_str().with_context(|| format!("submit failed: {answer}"))?.to_string();
    println!("-> {answer}");

    let job = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let j: Value = http.get(format!("{api}/search/job/{id}")).send().await?.json().await?;
        let o = &j["object"];
        eprintln!(
            "  {:<9} {:>3}%  rows generated {:>9}  sent {:>9}  parts {}",
            o["status"].as_str().unwrap_or("?"),
            o["extra"]["percentComplete"].as_u64().unwrap_or(0),
            o["eventGenerated"],
            o["eventsSent"],
            o["extra"]["paths"].as_array().map_or(0, Vec::len)
        );
        if matches!(o["status"].as_str(), Some("COMPLETED" | "FAILED" | "STOPPED" | "REMOVED")) {
            break j;
        }
    };
    println!("GET /search/job/{id} ->\n{}", serde_json::to_string_pretty(&job)?);
    // The email is sent just after the job ends.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outbox = config.outbox_dir();
    let mut emails: Vec<_> = std::fs::read_dir(&outbox)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    emails.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    match emails.last() {
        Some(p) => println!(
            "Notification email (no SMTP server configured, so written to the outbox): {}",
            p.display()
        ),
        None => println!("No notification email found in {}", outbox.display()),
    }
    println!("Uploaded objects are files under {}", opts.dir.join("s3").join(BUCKET).display());
    if opts.keep {
        let token = token_file.display();
        // This very binary: `forwarder` is not on the PATH after `cargo run`.
        let exe = std::env::current_exe().map_or_else(|_| "forwarder".into(), |p| p.display().to_string());
        println!("Still serving until Ctrl-C, at {api}. Try:");
        println!("  curl -H \"Authorization: Bearer $(cat {token})\" {api}/search/jobs");
        println!("  FORWARDER_TOKEN=$(cat {token}) {exe} jobs list --server {api}");
        tokio::signal::ctrl_c().await?;
        println!("Ctrl-C: stopping");
    } else {
        println!(
            "The demo's server stops now; `--keep` keeps it up, and README, Running it, shows forwarder serve."
        );
    }
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}
