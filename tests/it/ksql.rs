//! ksqlDB's `POST /query` over real HTTP: a pull query's rows exactly as the engine gives them,
//! a push query (`EMIT CHANGES`) that streams rows appended after it started and ends, its
//! memory freed (`/metrics`), when the client leaves; `LIMIT` ends a push query with "Limit
//! Reached"; a failure mid-stream still ends a valid JSON array; HTTP Basic both ways; the
//! per-domain cap and `/close-query` by domain; bad requests get ksqlDB's error shape.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const KSQL_V1: &str = "application/vnd.ksql.v1+json";

async fn post(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .post(format!("{}/query", app.api))
        .header("content-type", KSQL_V1)
        .header("accept", KSQL_V1)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The elements of a whole `/query` body, which must be one valid JSON array.
async fn body_elements(r: reqwest::Response) -> Vec<Value> {
    let body = r.bytes().await.unwrap();
    let parsed: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not a JSON array ({e}): {}", String::from_utf8_lossy(&body)));
    parsed.as_array().expect("an array").clone()
}

fn rows_of(elements: &[Value]) -> Vec<Vec<Value>> {
    elements.iter().filter_map(|e| e["row"]["columns"].as_array().cloned()).collect()
}

/// Reads a streamed body element by element (one per line, as the server writes them).
struct Reader {
    response: reqwest::Response,
    pending: Vec<u8>,
}

impl Reader {
    /// The next element, `None` at the end of the body.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8(line).unwrap();
                let text = text.trim().trim_start_matches('[').trim_end_matches([',', ']']);
                if !text.is_empty() {
                    return Some(serde_json::from_str(text).unwrap());
                }
                continue;
            }
            match self.response.chunk().await.unwrap() {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => return None,
            }
        }
    }
}

const PUSH_RUNNING: &str = "forwarder_ksql_queries_running{kind=\"push\"} ";
const HELD: &str = "forwarder_ksql_batch_bytes_held ";

/// Waits until no push query runs and no batch is held.
async fn until_released(app: &TestApp) {
    for _ in 0..100 {
        if app.gauge(PUSH_RUNNING).await == 0 && app.gauge(HELD).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the push query still runs 10 s after its client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_query_streams_the_querys_rows_as_a_json_array() {
    let app = spawn_app(2_000).await;
    let query = "SELECT * FROM demo.ecommerce.data";
    let r = post(&app, json!({"ksql": format!("{query};"), "streamsProperties": {}})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], KSQL_V1);
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    let elements = body_elements(r).await;
    let header = &elements[0]["header"];
    assert!(header["queryId"].as_str().unwrap().starts_with("query_"), "{header}");
    assert_eq!(
        header["schema"],
        "`EVENTDATE` TIMESTAMP, `CLIENTIPADDRESS` STRING, `METHOD` STRING, `URI` STRING, `PROTOCOL` STRING, \
         `STATUSCODE` BIGINT, `BYTESTRANSFERRED` BIGINT, `REFERRALURI` STRING, `USERAGENT` STRING, \
         `COOKIE` STRING, `TIMETAKEN` BIGINT"
    );
    assert_eq!(elements.last().unwrap(), &json!({"finalMessage": "Query Completed"}));
    let rows: Vec<Vec<String>> =
        rows_of(&elements).iter().map(|r| r.iter().map(json_as_csv_field).collect()).collect();
    let expected = app.direct_rows(query).await;
    assert_eq!(rows.len(), 2_000);
    assert_eq!(rows[..], expected[1..], "exactly the query's rows, in order");

    // A pull query's LIMIT is the query's own; plain JSON is answered when asked for.
    let r = app
        .http
        .post(format!("{}/query", app.api))
        .header("accept", "application/json")
        .json(&json!({"ksql": "SELECT uri FROM demo.ecommerce.data LIMIT 3;"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let elements = body_elements(r).await;
    assert_eq!(rows_of(&elements).len(), 3);
    assert_eq!(elements.len(), 5);
}

/// The `uri` of rows `first..first + count` of the demo table, as `write_csv` writes them.
fn demo_uris(first: u64, count: u64, start_ms: i64) -> Vec<String> {
    (first..first + count)
        .map(|i| {
            let mut row = Vec::new();
            forwarder::query::demo::push_row(&mut row, i, start_ms, 1);
            parse_csv(&row)[0][3].clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_query_streams_rows_that_land_after_it_started_until_the_client_leaves() {
    let app = spawn_app(2_000).await;
    assert_eq!(app.gauge(PUSH_RUNNING).await, 0);
    let r =
        post(&app, json!({"ksql": "SELECT uri, statusCode FROM demo.ecommerce.data EMIT CHANGES;"})).await;
    assert_eq!(r.status(), 200);
    let mut reader = Reader { response: r, pending: Vec::new() };
    let header = reader.next().await.unwrap();
    assert!(header["header"]["queryId"].as_str().unwrap().starts_with("transient_"), "{header}");
    assert_eq!(header["header"]["schema"], "`URI` STRING, `STATUSCODE` BIGINT");
    assert_eq!(app.gauge(PUSH_RUNNING).await, 1);

    // 300 rows land in the table after the query started (moved in whole, as a writer would).
    let now = forwarder::job::now_ms();
    let staged = app.dir.join("ecommerce-001.csv");
    forwarder::query::demo::write_csv(&staged, 2_000, 300, now, 1).unwrap();
    std::fs::rename(&staged, app.catalog.parent().unwrap().join("data/ecommerce-001.csv")).unwrap();
    let mut uris = Vec::new();
    let read = async {
        while uris.len() < 300 {
            let element = reader.next().await.expect("the push query keeps streaming");
            if let Some(columns) = element["row"]["columns"].as_array() {
                uris.push(columns[0].as_str().unwrap().to_string());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the new rows arrive");
    // Only the new rows (the query started at the latest, as ksqlDB's do), each once, in order.
    assert_eq!(uris, demo_uris(2_000, 300, now));
    assert_eq!(app.gauge(PUSH_RUNNING).await, 1, "it keeps running for more rows");

    // The client leaves: the query ends and what it held is released.
    drop(reader);
    until_released(&app).await;
    assert_eq!(reqwest::get(format!("{}/healthz", app.api)).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_ends_a_push_query_with_limit_reached() {
    let app = spawn_app(20_000).await;
    let earliest = json!({"ksql.streams.auto.offset.reset": "earliest"});
    for limit in [5, 10_000] {
        let ksql = format!("SELECT uri FROM demo.ecommerce.data EMIT CHANGES LIMIT {limit};");
        let r = post(&app, json!({"ksql": ksql, "streamsProperties": earliest})).await;
        assert_eq!(r.status(), 200);
        let elements = body_elements(r).await;
        assert_eq!(elements.last().unwrap(), &json!({"finalMessage": "Limit Reached"}));
        let uris: Vec<String> = rows_of(&elements).iter().map(|r| json_as_csv_field(&r[0])).collect();
        let expected: Vec<String> = app.direct_rows("SELECT uri FROM demo.ecommerce.data").await[1..=limit]
            .iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(uris, expected, "the first {limit} rows, from the earliest");
    }
    until_released(&app).await;
}

/// Fails on the rows after 00:10:00 (row 15,000 of 20,000): long after the first rows went out.
const FAILS_LATE: &str = "SELECT uri, 1 / CASE WHEN eventdate >= TIMESTAMP '2026-01-01 00:10:00' THEN 0 ELSE 1 END AS one \
                          FROM demo.ecommerce.data";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_stream_ends_the_array_with_an_error_message() {
    let app = spawn_app(20_000).await;
    let r = post(&app, json!({"ksql": format!("{FAILS_LATE};")})).await;
    assert_eq!(r.status(), 200, "the failure comes after the status");
    let elements = body_elements(r).await;
    let error = &elements.last().unwrap()["errorMessage"];
    assert_eq!(error["@type"], "generic_error", "{error}");
    assert!(error["message"].as_str().unwrap().contains("Divide by zero"), "{error}");
    assert!(error["error_code"].as_u64().is_some(), "{error}");
    let rows: Vec<Vec<String>> =
        rows_of(&elements).iter().map(|r| r.iter().map(json_as_csv_field).collect()).collect();
    assert!(rows.len() > 8_000 && rows.len() <= 15_000, "{} rows before the failure", rows.len());
    let prefix = app.direct_rows("SELECT uri, 1 AS one FROM demo.ecommerce.data").await;
    assert_eq!(rows[..], prefix[1..=rows.len()]);

    // Failing on the first batch: nothing was sent yet, so it is an error status instead.
    let r = post(&app, json!({"ksql": "SELECT 1 / 0 AS x;"})).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("Divide by zero"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_takes_a_token_as_password_or_an_api_key_and_its_secret() {
    let app = spawn_app(100).await;
    let (_, printed) = auth_cli(&app, &["create-key", "--domain", "default"]);
    let (key, secret) = api_key_from(&printed);
    let client = reqwest::Client::new();
    let query = |user: &str, password: &str| {
        client
            .post(format!("{}/query", app.api))
            .basic_auth(user, Some(password))
            .header("content-type", KSQL_V1)
            .body(json!({"ksql": "SELECT 1 AS one;"}).to_string())
            .send()
    };
    for (user, password) in [("anyone", app.token.as_str()), ("", app.token.as_str()), (&key, &secret)] {
        let r = query(user, password).await.unwrap();
        assert_eq!(r.status(), 200, "{user}");
        assert_eq!(rows_of(&body_elements(r).await), vec![vec![json!(1)]]);
    }
    for (user, password) in [(key.as_str(), "not-the-secret"), ("anyone", "not-a-token")] {
        let r = query(user, password).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"forwarder\"");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (body["@type"].as_str(), body["error_code"].as_u64()),
            (Some("generic_error"), Some(40100))
        );
        assert!(!body.to_string().contains("not-the-secret"));
    }
    // Basic is for ksqlDB's clients only: Devo's paths keep their own schemes.
    let r = client
        .get(format!("{}/search/jobs", app.api))
        .basic_auth("x", Some(&app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_capped_and_closed_per_domain() {
    let app = spawn_app_with(100, |c| c.server.max_streams_per_domain = 2).await;
    let push = json!({"ksql": "SELECT uri FROM demo.ecommerce.data EMIT CHANGES;"});
    let mut running = Vec::new();
    for _ in 0..2 {
        let r = post(&app, push.clone()).await;
        assert_eq!(r.status(), 200);
        let mut reader = Reader { response: r, pending: Vec::new() };
        let id = reader.next().await.unwrap()["header"]["queryId"].as_str().unwrap().to_string();
        running.push((id, reader));
    }
    let r = post(&app, push.clone()).await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], 42900, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("already runs 2 streamed queries")
            && message.contains("server.max_streams_per_domain"),
        "says the cap and the setting: {message}"
    );

    // Another domain is not held back, and cannot close this domain's queries.
    let (_, acme) = auth_cli(&app, &["create-token", "--domain", "acme"]);
    let as_acme = reqwest::Client::new();
    let r = as_acme
        .post(format!("{}/query", app.api))
        .basic_auth("acme", Some(acme.trim()))
        .body(json!({"ksql": "SELECT 1 AS one;"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (id, mut reader) = running.pop().unwrap();
    let close = |client: &reqwest::Client| {
        client.post(format!("{}/close-query", app.api)).body(json!({"queryId": id}).to_string())
    };
    let r = close(&as_acme).basic_auth("acme", Some(acme.trim())).send().await.unwrap();
    assert_eq!(r.status(), 400, "not acme's query");
    let r = close(&app.http).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ended = async {
        let mut last = None;
        while let Some(element) = reader.next().await {
            last = Some(element);
        }
        last
    };
    let last = tokio::time::timeout(Duration::from_secs(10), ended).await.expect("the closed query ends");
    assert_eq!(last, Some(json!({"finalMessage": "Query Closed"})));
    assert_eq!(post(&app, push).await.status(), 200, "a closed query frees its place");
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_ksqldb_errors_that_say_what_to_fix() {
    let app = spawn_app(100).await;
    let cases: [(&str, u16, &str, &str); 9] = [
        ("SELECT 1", 400, "generic_error", "JSON object"),
        (r#"{"streamsProperties": {}}"#, 400, "generic_error", "\"ksql\""),
        (r#"{"ksql": "SELECT 1; SELECT 2;"}"#, 400, "statement_error", "one statement"),
        (
            r#"{"ksql": "CREATE STREAM s (a INT) WITH (kafka_topic='t');"}"#,
            400,
            "statement_error",
            "not CREATE",
        ),
        (r#"{"ksql": "INSERT INTO t VALUES (1);"}"#, 400, "statement_error", "not INSERT"),
        (
            r#"{"ksql": "SELECT 1;", "streamsProperties": {"ksql.query.pull.max.qps": "5"}}"#,
            400,
            "generic_error",
            "auto.offset.reset",
        ),
        (r#"{"ksql": "SELECT 1 AS one EMIT CHANGES;"}"#, 400, "statement_error", "time column"),
        (r#"{"ksql": "SELECT nope FROM demo.ecommerce.data;"}"#, 400, "statement_error", "nope"),
        (
            r#"{"ksql": "SELECT uri FROM demo.ecommerce.data EMIT FINAL;"}"#,
            400,
            "statement_error",
            "EMIT CHANGES",
        ),
    ];
    for (body, status, kind, needle) in cases {
        let r = app.http.post(format!("{}/query", app.api)).body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["@type"], kind, "{body}: {answer}");
        assert_eq!(answer["error_code"], if kind == "statement_error" { 40001 } else { 40000 }, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }
    let r = app
        .http
        .post(format!("{}/query", app.api))
        .header("accept", "text/csv")
        .body(json!({"ksql": "SELECT 1;"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = app.http.get(format!("{}/query", app.api)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = reqwest::Client::new().post(format!("{}/query", app.api)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["@type"], "generic_error");
    assert_eq!(reqwest::get(format!("{}/healthz", app.api)).await.unwrap().status(), 200);
}

/// Runs tests/ksql-client/client.py (ksql-python-ng, unmodified) off the test's threads: the
/// body it streamed.
async fn ksql_client(
    app: &TestApp,
    user: &str,
    password: &str,
    ksql: &str,
    reset: Option<&str>,
) -> Vec<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ksql-client/client.py");
    let mut command = std::process::Command::new(env("FORWARDER_TEST_KSQL_PYTHON"));
    command.arg(script).args([app.api.as_str(), user, password, ksql]).args(reset);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout).expect("the client streamed one JSON array");
    body.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ksqldb_client_from_pypi_streams_pull_and_push_queries_with_basic_auth() {
    let app = spawn_app(2_000).await;
    let (_, printed) = auth_cli(&app, &["create-key", "--domain", "default"]);
    let (key, secret) = api_key_from(&printed);
    let query = "SELECT uri, statusCode FROM demo.ecommerce.data";
    let elements = ksql_client(&app, &key, &secret, query, None).await;
    let rows: Vec<Vec<String>> =
        rows_of(&elements).iter().map(|r| r.iter().map(json_as_csv_field).collect()).collect();
    assert_eq!(rows[..], app.direct_rows(query).await[1..]);
    assert_eq!(elements.last().unwrap(), &json!({"finalMessage": "Query Completed"}));
    let ksql = "SELECT uri FROM demo.ecommerce.data EMIT CHANGES LIMIT 7";
    let elements = ksql_client(&app, "anyone", &app.token, ksql, Some("earliest")).await;
    assert_eq!(rows_of(&elements).len(), 7);
    assert_eq!(elements.last().unwrap(), &json!({"finalMessage": "Limit Reached"}));
}
