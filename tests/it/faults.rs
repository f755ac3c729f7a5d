//! Transient S3 failures: a proxy between the worker and LocalStack fails a share of the
//! requests (503 SlowDown, 500 InternalError, dropped connections, delays) and loses the
//! answer to the first call that finishes each object (a completion or a whole-object put),
//! after LocalStack has carried it out. The export still completes with exactly the query's
//! rows, and no multipart upload is left open.
//!
//! The same proxy serves the other fault tests ([`Mode`]): answers lost at a seeded rate or
//! for chosen calls ([`AnswerLoss`]), and an endpoint that echoes the credentials it was sent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use crate::common::*;
use crate::export::{QUERY, check_completed_export};

/// What the proxy does to the requests it is sent.
pub enum Mode {
    /// Fails 3 requests in 10 and loses the answer to the first call finishing each object.
    Transient(Arc<Faults>),
    /// Carries out every request, and loses the answer to those [`AnswerLoss`] picks.
    LoseAnswers(Arc<AnswerLoss>),
    /// Carries out nothing: answers every request with a 403 whose body echoes the access key
    /// id, the session token and the signature the request was sent with, as some
    /// S3-compatible stores do. What it echoed is kept, for the tests to look for.
    EchoCredentials(Arc<Mutex<Vec<String>>>),
}

/// The S3 call a request is (path-style addressing: `/bucket/key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S3Call {
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListMultipartUploads,
    PutObject,
    Other,
}

impl S3Call {
    fn of<B>(req: &Request<B>) -> S3Call {
        let query = req.uri().query().unwrap_or("");
        let has = |name: &str| query.split('&').any(|p| p.split('=').next() == Some(name));
        let object = req.uri().path().trim_start_matches('/').contains('/');
        match *req.method() {
            Method::POST if has("uploads") => S3Call::CreateMultipartUpload,
            Method::POST if has("uploadId") => S3Call::CompleteMultipartUpload,
            Method::PUT if has("partNumber") => S3Call::UploadPart,
            Method::PUT if object => S3Call::PutObject,
            Method::DELETE if has("uploadId") => S3Call::AbortMultipartUpload,
            Method::GET if has("uploads") => S3Call::ListMultipartUploads,
            _ => S3Call::Other,
        }
    }
}

/// Which answers are lost: each call of a kind in `rates` with that probability, drawn from
/// a random generator of its own per kind seeded with `seed` (in the order the calls arrive,
/// so that a seed loses the same share of each kind on every run), and the n-th call (from 1)
/// of each kind in `nth`.
#[derive(Default)]
pub struct AnswerLoss {
    rates: HashMap<S3Call, f64>,
    nth: HashSet<(S3Call, u64)>,
    seed: u64,
    state: Mutex<LossState>,
}

#[derive(Default)]
struct LossState {
    rngs: HashMap<S3Call, StdRng>,
    seen: HashMap<S3Call, u64>,
    lost: HashMap<S3Call, u64>,
}

impl AnswerLoss {
    pub fn at_rate(rate: f64, calls: &[S3Call], seed: u64) -> Self {
        Self { rates: calls.iter().map(|c| (*c, rate)).collect(), seed, ..Self::default() }
    }

    pub fn nth(calls: &[(S3Call, u64)]) -> Self {
        Self { nth: calls.iter().copied().collect(), ..Self::default() }
    }

    fn loses(&self, call: S3Call) -> bool {
        let mut state = self.state.lock().unwrap();
        let n = *state.seen.entry(call).and_modify(|n| *n += 1).or_insert(1);
        let by_rate = self.rates.get(&call).is_some_and(|rate| {
            let seed = self.seed ^ (call as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            state.rngs.entry(call).or_insert_with(|| StdRng::seed_from_u64(seed)).random_bool(*rate)
        });
        let lose = by_rate || self.nth.contains(&(call, n));
        if lose {
            *state.lost.entry(call).or_default() += 1;
        }
        lose
    }

    /// How many calls of this kind lost their answer.
    pub fn lost(&self, call: S3Call) -> u64 {
        self.state.lock().unwrap().lost.get(&call).copied().unwrap_or(0)
    }

    /// How many calls of this kind the proxy was sent.
    pub fn seen(&self, call: S3Call) -> u64 {
        self.state.lock().unwrap().seen.get(&call).copied().unwrap_or(0)
    }
}

#[derive(Default)]
pub struct Faults {
    requests: AtomicU64,
    slow_down: AtomicU64,
    internal: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    /// Objects whose finishing call was carried out but answered by a dropped connection.
    lost_answers: Mutex<HashSet<String>>,
    lost_completions: AtomicU64,
}

/// The key of a call that finishes an object: a completion or a whole-object put.
fn finishing_key<B>(req: &Request<B>) -> Option<String> {
    matches!(S3Call::of(req), S3Call::CompleteMultipartUpload | S3Call::PutObject)
        .then(|| req.uri().path().to_string())
}

fn s3_error(status: u16, code: &str) -> Response<Full<Bytes>> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(xml)))
        .unwrap()
}

/// One request, as [`Mode`] says.
async fn handle(
    req: Request<Incoming>,
    upstream: String,
    mode: Arc<Mode>,
    http: reqwest::Client,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    match &*mode {
        Mode::Transient(faults) => transient(req, &upstream, faults, &http).await,
        Mode::LoseAnswers(loss) => {
            let lose = loss.loses(S3Call::of(&req));
            let answer = forward(req, &upstream, &http).await?;
            // An error from the service makes hyper close the connection with no answer.
            if lose { Err(std::io::Error::other("injected loss of the answer")) } else { Ok(answer) }
        }
        Mode::EchoCredentials(echoed) => Ok(echo_credentials(&req, echoed)),
    }
}

/// A 403 holding the request's credentials, in the message (which the SDK reports) and in
/// elements of their own.
fn echo_credentials<B>(req: &Request<B>, echoed: &Mutex<Vec<String>>) -> Response<Full<Bytes>> {
    let header =
        |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (token, authorization) = (header("x-amz-security-token"), header("authorization"));
    let field = |name: &str| {
        authorization
            .split(&format!("{name}="))
            .nth(1)
            .and_then(|v| v.split([',', '/']).next())
            .unwrap_or_default()
            .to_string()
    };
    let (key_id, signature) = (field("Credential"), field("Signature"));
    echoed
        .lock()
        .unwrap()
        .extend([token.clone(), key_id.clone(), signature].into_iter().filter(|v| !v.is_empty()));
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidToken</Code>\
         <Message>The provided token {token} is malformed or otherwise invalid (key {key_id}; {authorization})</Message>\
         <Token-0>{token}</Token-0><AWSAccessKeyId>{key_id}</AWSAccessKeyId></Error>"
    );
    Response::builder()
        .status(403)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(xml)))
        .unwrap()
}

/// One request: fail it (3 in 10, never twice in a row), delay it, or pass it on.
async fn transient(
    req: Request<Incoming>,
    upstream: &str,
    faults: &Faults,
    http: &reqwest::Client,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let lose_answer = finishing_key(&req).is_some_and(|key| faults.lost_answers.lock().unwrap().insert(key));
    if lose_answer {
        if req.method() == hyper::Method::POST {
            faults.lost_completions.fetch_add(1, Ordering::SeqCst);
        }
        forward(req, upstream, http).await?;
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
    forward(req, upstream, http).await
}

async fn forward(
    req: Request<Incoming>,
    upstream: &str,
    http: &reqwest::Client,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
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
pub async fn spawn_faulty_proxy(mode: Mode) -> String {
    let mode = Arc::new(mode);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = env("FORWARDER_TEST_S3_ENDPOINT");
    let http = reqwest::Client::new();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (upstream, mode, http) = (upstream.clone(), mode.clone(), http.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    handle(req, upstream.clone(), mode.clone(), http.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_s3_failures_are_retried_and_the_export_completes() {
    let faults = Arc::new(Faults::default());
    let proxy = spawn_faulty_proxy(Mode::Transient(faults.clone())).await;
    let mut s3_errors = 0.0;
    // Small gzip parts (one put each), then one plain object of several 5 MiB upload parts.
    let small_parts = json!({"format": "gzip", "retention.size": 0.2});
    let one_object = json!({"format": "plain", "multiplefile": false});
    for (mut params, ext, rows, max_bytes) in
        [(small_parts, "csv.gz", 20_000, Some(200_000)), (one_object, "csv", 60_000, None)]
    {
        let app = spawn_app(rows).await;
        params["aws.endpoint"] = json!(proxy);
        params["notification.email"] = json!("ops@example.com");
        let id = app.submit_export(QUERY, params).await;
        app.worker.try_run_next_job().await.unwrap().unwrap();
        // Exactly the query's rows, every part whole, no multipart upload left open.
        check_completed_export(&app, &id, ext, max_bytes, None).await;
        s3_errors +=
            app.metrics().await.samples.iter().filter(|s| s.metric == "forwarder_s3_errors_total").count()
                as f64;
    }
    let count = |c: &AtomicU64| c.load(Ordering::SeqCst);
    assert!(
        count(&faults.slow_down) >= 1
            && count(&faults.internal) >= 1
            && count(&faults.dropped) >= 1
            && count(&faults.delayed) >= 1,
        "every kind of fault was injected: {} requests, {} 503, {} 500, {} dropped, {} delayed",
        count(&faults.requests),
        count(&faults.slow_down),
        count(&faults.internal),
        count(&faults.dropped),
        count(&faults.delayed)
    );
    let lost = faults.lost_answers.lock().unwrap().len();
    assert!(
        lost >= 3 && count(&faults.lost_completions) == 1,
        "answers lost: {lost} objects, {} completions",
        count(&faults.lost_completions)
    );
    assert_eq!(s3_errors, 0.0, "no S3 call failed for good");
}
