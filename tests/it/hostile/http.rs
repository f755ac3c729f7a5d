//! HTTP edges: credentials checked at submission, slow and idle clients, a domain's queue cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Today `"AKIA\r\nX"` was queued and panicked the S3 signer at every run of the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_header_params_with_control_or_non_ascii_characters_are_refused() {
    let app = spawn_app(100).await;
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let submit = |patch: Value| {
        let mut params = app.params(json!({"format": "gzip"}));
        params.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        app.submit(json!({"query": "SELECT * FROM demo.ecommerce.data", "from": from, "to": to,
                          "destination": {"type": "s3", "params": params}}))
    };
    // Each value is marked (QZX…JQZ) so that an echo of it in the answer would be found.
    let bad_values = [
        "QZXAKIA\r\nXJQZ",
        "QZXAK\0IAJQZ",
        "QZXAK\tIAJQZ",
        "QZXAKIAÉJQZ",
        "QZXAK\u{7f}IAJQZ",
        "QZXAK\u{85}IAJQZ",
    ];
    let mut cases: Vec<(Value, &str, u64)> = Vec::new();
    for key in ["aws.accesskey", "aws.secretkey", "aws.sessiontoken"] {
        for bad in bad_values {
            cases.push((json!({ key: bad }), key, 206));
        }
    }
    cases.push((json!({"aws.sse": "aws:kms", "aws.kmskeyid": "alias/QZX\r\nJQZ"}), "aws.kmskeyid", 206));
    cases.push((json!({"aws.prefix": "exports/QZX\nJQZ/"}), "aws.prefix", 206));
    cases.push((
        json!({"aws.endpoint": format!("{}\tQZXJQZ", env("FORWARDER_TEST_S3_ENDPOINT"))}),
        "aws.endpoint",
        206,
    ));
    cases.push((json!({"format": "zip", "file.password": "QZXpass\r\nJQZ"}), "file.password", 211));
    for (patch, key, code) in cases {
        let (status, answer) = submit(patch.clone()).await;
        let msg = answer["msg"].as_str().unwrap_or_default();
        assert_eq!((status.as_u16(), answer["status"].as_u64()), (400, Some(code)), "{patch}: {answer}");
        assert!(
            msg.contains(key) && msg.contains("character"),
            "the message names the parameter and what is wrong: {msg}"
        );
        assert!(!msg.contains("QZX") && !msg.contains("JQZ"), "the value is not echoed: {msg}");
    }
    // Non-ASCII stays fine where it can travel: object keys and zip passwords.
    let (status, answer) =
        submit(json!({"aws.prefix": "été/", "format": "zip", "file.password": "pässwört"})).await;
    assert_eq!(status, 200, "{answer}");
    let (_, list) = app.get("/search/jobs").await;
    assert_eq!(list["object"].as_array().map(Vec::len), Some(1), "only the valid request was queued: {list}");
    assert_eq!(app.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domains_queue_is_capped_with_429_and_other_domains_still_submit() {
    let app = spawn_app_with(100, |c| c.worker.max_queued_per_domain = 3).await;
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let body = json!({"query": "SELECT * FROM demo.ecommerce.data", "from": from, "to": to,
                      "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}});
    for _ in 0..3 {
        let (status, answer) = app.submit(body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    let res = app.http.post(format!("{}/search/query", app.api)).json(&body).send().await.unwrap();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let (status, answer): (_, Value) = (res.status(), res.json().await.unwrap());
    assert_eq!((status.as_u16(), answer["status"].as_u64()), (429, Some(429)), "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(
        msg.contains("domain default has 3 jobs queued") && msg.contains("worker.max_queued_per_domain"),
        "{msg}"
    );
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 0)), "a Retry-After in seconds");
    let (_, list) = app.get("/search/jobs").await;
    assert_eq!(list["object"].as_array().map(Vec::len), Some(3), "the refused job was not queued");

    // Another domain has a queue of its own.
    let (_, token) = auth_cli(&app, &["create-token", "--domain", "acme"]);
    let res = reqwest::Client::new()
        .post(format!("{}/search/query", app.api))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // A removed job leaves the queue: the first domain may submit again.
    let id = list["object"][0]["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/search/job/remove/{id}")).await.0, 200);
    assert_eq!(app.submit(body).await.0, 200);
}

/// What one trickling client saw: when the server closed its connection.
struct Trickle {
    connected: AtomicUsize,
    closed: AtomicUsize,
}

/// Opens a connection that sends a request line, then one header line every 5 s, until the
/// server closes it; `silent` ones send nothing at all.
async fn trickle(address: String, n: usize, silent: bool, seen: Arc<Trickle>) {
    let mut stream = TcpStream::connect(&address).await.unwrap();
    if !silent {
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: forwarder\r\n").await.unwrap();
    }
    seen.connected.fetch_add(1, Ordering::SeqCst);
    let mut buf = [0u8; 256];
    let mut line = 0;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {} // an error status, say; the close follows
            },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                line += 1;
                if !silent && stream.write_all(format!("X-Trickle-{n}: {line}\r\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
    seen.closed.fetch_add(1, Ordering::SeqCst);
}

/// How many descriptors process `pid` holds, once it holds `wanted` or `patience` has passed.
async fn wait_for_descriptors(pid: u32, wanted: usize, patience: Duration) -> usize {
    let since = Instant::now();
    loop {
        let held = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        if held >= wanted || since.elapsed() > patience {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_and_silent_clients_leave_the_server_answering_and_are_cut() {
    // Both ends of 1,100 connections live in this process.
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let app = spawn_app(100).await;
    let address = app.api.trim_start_matches("http://").to_string();
    let seen = Arc::new(Trickle { connected: AtomicUsize::new(0), closed: AtomicUsize::new(0) });
    let (trickling, silent) = (1_100, 50);
    let opened = Instant::now();
    for n in 0..trickling + silent {
        tokio::spawn(trickle(address.clone(), n, n >= trickling, seen.clone()));
    }
    while seen.connected.load(Ordering::SeqCst) < trickling + silent {
        assert!(opened.elapsed() < Duration::from_secs(30), "connections not open after 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both ends in this process: the server has accepted them all once it holds twice as many.
    let holding =
        wait_for_descriptors(std::process::id(), 2 * (trickling + silent), Duration::from_secs(10)).await;
    println!("{} connections open after {:?} ({holding} descriptors)", trickling + silent, opened.elapsed());

    // While every one of them is held open, a new client is answered.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let asked = Instant::now();
    let health =
        tokio::time::timeout(Duration::from_secs(10), fresh.get(format!("{}/healthz", app.api)).send()).await;
    let health_took = asked.elapsed();
    let asked = Instant::now();
    let jobs = tokio::time::timeout(
        Duration::from_secs(10),
        fresh.get(format!("{}/search/jobs", app.api)).bearer_auth(&app.token).send(),
    )
    .await;
    let jobs_took = asked.elapsed();
    assert_eq!(
        seen.closed.load(Ordering::SeqCst),
        0,
        "the slow connections were still open while the API answered"
    );
    assert_eq!(health.expect("/healthz answered").unwrap().status(), 200);
    assert_eq!(jobs.expect("/search/jobs answered").unwrap().status(), 200);
    println!(
        "with {} slow connections open: /healthz in {health_took:?}, /search/jobs in {jobs_took:?}",
        trickling + silent
    );

    // The server closes them once server.header_read_timeout (10 s) has passed.
    while seen.closed.load(Ordering::SeqCst) < trickling + silent {
        assert!(
            opened.elapsed() < Duration::from_secs(40),
            "{} of {} slow connections still open after 40 s",
            trickling + silent - seen.closed.load(Ordering::SeqCst),
            trickling + silent
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("all closed by the server {:?} after they opened", opened.elapsed());
    assert_eq!(app.get("/healthz").await.0, 200, "the server is still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_after_the_body_read_timeout() {
    let app = spawn_app_with(100, |c| c.server.body_read_timeout = Duration::from_secs(3)).await;
    let mut stream = TcpStream::connect(app.api.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /search/query HTTP/1.1\r\nHost: forwarder\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        app.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let sender = tokio::spawn(async move {
        for sent in 0..1000 {
            if write.write_all(b" ").await.is_err() {
                return sent;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        1000
    });
    let mut answer = Vec::new();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut answer))
        .await
        .expect("the server did not cut the slow body within 30 s")
        .ok();
    println!("cut after {:?}: {:?}", started.elapsed(), String::from_utf8_lossy(&answer).lines().next());
    sender.abort();
    let answer = String::from_utf8_lossy(&answer);
    // A 408 in Devo's shape, or at least a closed connection.
    if !answer.is_empty() {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"status\":408") && answer.contains("server.body_read_timeout"), "{answer}");
    }
    let (_, list) = app.get("/search/jobs").await;
    assert_eq!(list["object"], json!([]), "nothing was queued");
    assert_eq!(app.get("/healthz").await.0, 200, "the server is still up");
}

/// The process itself, started as a service manager would with the usual soft limit of 1024
/// descriptors: it raises the limit, so 1,100 slow clients do not lock everyone else out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_process_started_with_1024_descriptors_serves_past_them() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let dir = std::env::temp_dir().join(format!("forwarder-it-{}", uuid::Uuid::new_v4()));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_forwarder"));
    command
        .arg("serve")
        .env("FORWARDER_DATA_DIR", &dir)
        .env("FORWARDER_LISTEN", format!("127.0.0.1:{port}"))
        .env("FORWARDER_DEMO_ROWS", "100")
        .env("FORWARDER_WORKER__ENABLED", "false")
        .kill_on_drop(true);
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    // SAFETY: only an async-signal-safe system call between fork and exec.
    unsafe {
        command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, 1024, hard));
    }
    let server = command.spawn().unwrap();
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let started = Instant::now();
    while http.get(format!("{api}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = std::fs::read_to_string(dir.join("initial-token")).unwrap();

    let seen = Arc::new(Trickle { connected: AtomicUsize::new(0), closed: AtomicUsize::new(0) });
    for n in 0..1_100 {
        tokio::spawn(trickle(api.trim_start_matches("http://").to_string(), n, false, seen.clone()));
    }
    while seen.connected.load(Ordering::SeqCst) < 1_100 {
        assert!(started.elapsed() < Duration::from_secs(60), "connections not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A connect returns once the kernel has queued the connection; wait (a while at most)
    // until the server has accepted them all, which a process held to 1024 descriptors never does.
    let server_pid = server.id().unwrap();
    let holding = wait_for_descriptors(server_pid, 1_100, Duration::from_secs(5)).await;
    println!("the server process holds {holding} descriptors");
    let asked = Instant::now();
    let health =
        tokio::time::timeout(Duration::from_secs(10), http.get(format!("{api}/healthz")).send()).await;
    let jobs = tokio::time::timeout(
        Duration::from_secs(10),
        http.get(format!("{api}/search/jobs")).bearer_auth(token.trim()).send(),
    )
    .await;
    let took = asked.elapsed();
    assert_eq!(
        seen.closed.load(Ordering::SeqCst),
        0,
        "the slow connections were still open while the API answered"
    );
    assert_eq!(health.expect("/healthz answered within 10 s").unwrap().status(), 200);
    assert_eq!(jobs.expect("/search/jobs answered within 10 s").unwrap().status(), 200);
    println!(
        "server process (soft limit 1024 at start), 1,100 slow connections open: /healthz and /search/jobs in {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_at_once_and_the_server_recovers() {
    let app = spawn_app_with(100, |c| c.server.max_connections = 3).await;
    let address = app.api.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The fourth is accepted and closed, not left waiting in the listen queue.
    let mut extra = TcpStream::connect(&address).await.unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: forwarder\r\n\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok() && answer.is_empty(),
        "a connection past the cap is closed without an answer: {answer:?}"
    );
    // Once the held connections go, the server answers again.
    drop(held);
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut status = None;
    for _ in 0..50 {
        if let Ok(r) = http.get(format!("{}/healthz", app.api)).send().await {
            status = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status.map(|s| s.as_u16()), Some(200));
}

/// HTTP/2 has no header timer between requests: an idle HTTP/2 connection is closed by
/// `server.idle_timeout` instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(100, |c| c.server.idle_timeout = Duration::from_secs(2)).await;
    let mut stream = TcpStream::connect(app.api.trim_start_matches("http://")).await.unwrap();
    // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame, then nothing.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "an idle HTTP/2 connection was still open after 20 s");
    // The server spoke HTTP/2 (its SETTINGS frame, type 4) before it went away (GOAWAY, type 7).
    assert!(answer.len() >= 9 && answer[3] == 4, "{answer:?}");
    assert_eq!(app.get("/healthz").await.0, 200);
}

/// A caller who is nobody is refused before the server reads (or waits for) a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_from_an_unknown_caller_is_not_waited_for() {
    let app = spawn_app(100).await;
    let mut stream = TcpStream::connect(app.api.trim_start_matches("http://")).await.unwrap();
    let head = "POST /search/query HTTP/1.1\r\nHost: forwarder\r\nAuthorization: Bearer fwd_not-a-token\r\nContent-Length: 1000000\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the refusal came without the body (within 10 s)")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 401") && answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("unknown or revoked token"), "{answer}");
    assert_eq!(app.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_jobs_leave_the_api_answering() {
    // Two jobs that keep every core busy for minutes, with little memory: a cross join of the
    // table with itself, filtered row by row.
    let app = spawn_app_with(20_000, |c| {
        // The worker loop of `serve`, as in production (tests mostly drive it by hand).
        c.worker.enabled = true;
        c.worker.concurrency = 2;
        c.worker.max_running_per_domain = Some(0);
    })
    .await;
    let heavy = "SELECT count(*) AS n FROM demo.ecommerce.data a CROSS JOIN demo.ecommerce.data b \
                 WHERE a.uri || b.userAgent LIKE '%no such text%'";
    let ids = [
        app.submit_export(heavy, json!({"format": "gzip"})).await,
        app.submit_export(heavy, json!({"format": "gzip"})).await,
    ];
    for id in &ids {
        let since = Instant::now();
        while app.get(&format!("/search/job/{id}")).await.1["object"]["status"] != "RUNNING" {
            assert!(since.elapsed() < Duration::from_secs(30), "the job did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // While both run, the API answers every probe (the guard is a hang guard, not a timing).
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..10 {
        let health =
            tokio::time::timeout(Duration::from_secs(5), fresh.get(format!("{}/healthz", app.api)).send())
                .await;
        assert_eq!(health.expect("/healthz answered while heavy jobs ran").unwrap().status(), 200);
        let (status, list) = tokio::time::timeout(Duration::from_secs(5), app.get("/search/jobs"))
            .await
            .expect("/search/jobs answered");
        assert_eq!(status, 200, "{list}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for id in &ids {
        assert_eq!(
            app.get(&format!("/search/job/{id}")).await.1["object"]["status"],
            "RUNNING",
            "still heavy while probed"
        );
        assert_eq!(app.get(&format!("/search/job/remove/{id}")).await.0, 200);
    }
}

/// A query that computes for many idle timeouts before its first row is answered in full on
/// `/query` and `/v1/stream`: the server is busy for that connection, not the client idle.
/// (It was cut after twice `server.idle_timeout` with no answer at all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_that_compute_long_before_their_first_row_are_answered() {
    let idle = Duration::from_millis(250);
    let app = spawn_app_with(1_500, |c| c.server.idle_timeout = idle).await;
    let slow = "SELECT count(*) AS n FROM demo.ecommerce.data a CROSS JOIN demo.ecommerce.data b \
                WHERE a.uri || b.userAgent LIKE '%no such text%'";
    let proves = |took: Duration| {
        assert!(took > idle * 4, "the query took {took:?}: too quick to prove anything, make it heavier");
    };

    let since = Instant::now();
    let r =
        app.http.post(format!("{}/query", app.api)).json(&json!({"ksql": format!("{slow};")})).send().await;
    let body = r.expect("an answer from /query").bytes().await.expect("the whole /query body");
    proves(since.elapsed());
    let elements: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(elements[1]["row"]["columns"], json!([0]), "{elements}");
    assert_eq!(elements[2], json!({"finalMessage": "Query Completed"}));

    let since = Instant::now();
    let r = app.http.post(format!("{}/v1/stream", app.api)).body(slow).send().await;
    let body = r.expect("an answer from /v1/stream").text().await.expect("the whole /v1/stream body");
    proves(since.elapsed());
    assert_eq!(body, "n\n0\n");
    assert_eq!(app.get("/healthz").await.0, 200);
}
