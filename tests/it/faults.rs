//! Transient S3 failures: a proxy between the worker and LocalStack fails a share of the
//! requests (503 SlowDown, 500 InternalError, dropped connections, delays) and loses the
//! answer to the first call that finishes each object (a completion or a whole-object put),
//! after LocalStack has carried it out. The export still completes with exactly the query's
//! rows, and no multipart upload is left open.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::common::*;
use crate::export::{QUERY, check_completed_export};

#[derive(Default)]
struct Faults {
    requests: AtomicU64,
    slow_down: AtomicU64,
    internal: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    /// Objects whose finishing call was carried out but answered by a dropped connection.
    lost_answers: Mutex<HashSet<String>>,
    lost_completions: AtomicU64,
}

/// The key of a call that finishes an object: `POST ?uploadId=` (completion) or a `PUT`
/// that is not a part upload.
fn finishing_key<B>(req: &Request<B>) -> Option<String> {
    let query = req.uri().query().unwrap_or("");
    let completion = req.method() == hyper::Method::POST && query.contains("uploadId=");
    let put = req.method() == hyper::Method::PUT && !query.contains("partNumber=") && req.uri().path().matches('/').count() > 1;
    (completion || put).then(|| req.uri().path().to_string())
}

fn s3_error(status: u16, code: &str) -> Response<Full<Bytes>> {
    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>");
    Response::builder().status(status).header("content-type", "application/xml").body(Full::new(Bytes::from(xml))).unwrap()
}

/// One request: fail it (3 in 10, never twice in a row), delay it, or pass it on.
async fn handle(req: Request<Incoming>, upstream: String, faults: Arc<Faults>, http: reqwest::Client) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let lose_answer = finishing_key(&req).is_some_and(|key| faults.lost_answers.lock().unwrap().insert(key));
    if lose_answer {
        if req.method() == hyper::Method::POST {
            faults.lost_completions.fetch_add(1, Ordering::SeqCst);
        }
        forward(req, &upstream, &http).await?;
        return Err(std::io::Error::other("injected loss of the answer"));
    }
    let n = faults.requests.fetch_add(1, Ordering::SeqCst);
    match n % 10 {
        1 => {
            faults.slow_down.fetch_add(1, Ordering::SeqCst);
            return Ok(s3_error(503, "SlowDown"));
        }
        4 => {
            faults.internal.fetch_add(1, Ordering::SeqCst);
            return Ok(s3_error(500, "InternalError"));
        }
        // An error from the service makes hyper close the connection with no answer.
        7 => {
            faults.dropped.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::other("injected connection drop"));
        }
        9 => {
            faults.delayed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        _ => {}
    }
    forward(req, &upstream, &http).await
}

async fn forward(req: Request<Incoming>, upstream: &str, http: &reqwest::Client) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    let url = format!("{upstream}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut out = http.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let res = out.send().await.map_err(std::io::Error::other)?;
    let mut answer = Response::builder().status(res.status());
    for (name, value) in res.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            answer = answer.header(name, value);
        }
    }
    let bytes = res.bytes().await.map_err(std::io::Error::other)?;
    Ok(answer.body(Full::new(bytes)).unwrap())
}

/// Starts the proxy; returns its URL.
async fn spawn_faulty_proxy(faults: Arc<Faults>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = env("FORWARDER_TEST_S3_ENDPOINT");
    let http = reqwest::Client::new();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (upstream, faults, http) = (upstream.clone(), faults.clone(), http.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(req, upstream.clone(), faults.clone(), http.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_s3_failures_are_retried_and_the_export_completes() {
    let faults = Arc::new(Faults::default());
    let proxy = spawn_faulty_proxy(faults.clone()).await;
    let mut s3_errors = 0.0;
    // Small gzip parts (one put each), then one plain object of several 5 MiB upload parts.
    let small_parts = json!({"format": "gzip", "retention.size": 0.2});
    let one_object = json!({"format": "plain", "multiplefile": false});
    for (mut params, ext, rows, max_bytes) in [(small_parts, "csv.gz", 20_000, Some(200_000)), (one_object, "csv", 60_000, None)] {
        let app = spawn_app(rows).await;
        params["aws.endpoint"] = json!(proxy);
        params["notification.email"] = json!("ops@example.com");
        let id = app.submit_export(QUERY, params).await;
        app.worker.try_run_next_job().await.unwrap().unwrap();
        // Exactly the query's rows, every part whole, no multipart upload left open.
        check_completed_export(&app, &id, ext, max_bytes, None).await;
        s3_errors += app.metrics().await.samples.iter().filter(|s| s.metric == "forwarder_s3_errors_total").count() as f64;
    }
    let count = |c: &AtomicU64| c.load(Ordering::SeqCst);
    assert!(count(&faults.slow_down) >= 1 && count(&faults.internal) >= 1 && count(&faults.dropped) >= 1 && count(&faults.delayed) >= 1,
        "every kind of fault was injected: {} requests, {} 503, {} 500, {} dropped, {} delayed", count(&faults.requests),
        count(&faults.slow_down), count(&faults.internal), count(&faults.dropped), count(&faults.delayed));
    let lost = faults.lost_answers.lock().unwrap().len();
    assert!(lost >= 3 && count(&faults.lost_completions) == 1, "answers lost: {lost} objects, {} completions", count(&faults.lost_completions));
    assert_eq!(s3_errors, 0.0, "no S3 call failed for good");
}
