//! `POST /v1/stream` over real HTTP: every format decodes to the query's rows, gzip and zstd
//! on Accept-Encoding, the client's query_id echoed, `DELETE /v1/stream/{id}` stops a long
//! query, a failure after the first byte ends the body with ClickHouse's tagged exception
//! frame (checked byte for byte against DESIGN §10b), and bad requests get a 4xx.

use std::time::Duration;

use forwarder::encode::tsv::unescape;
use serde_json::Value;

use crate::common::*;

const ALL: &str = "SELECT * FROM demo.ecommerce.data";

async fn post(app: &TestApp, query: &str, params: &str, accept: Option<&str>) -> reqwest::Response {
    let mut req = app.http.post(format!("{}/v1/stream{params}", app.api)).body(query.to_string());
    if let Some(a) = accept {
        req = req.header("accept-encoding", a);
    }
    req.send().await.unwrap()
}

/// Nine million rows: minutes of streaming, far longer than a test waits.
const NINE_MILLION_ROWS: &str =
    "SELECT a.uri, b.statusCode FROM demo.ecommerce.data a CROSS JOIN demo.ecommerce.data b";

/// Starts [`NINE_MILLION_ROWS`] streaming under `query_id`.
async fn start_long(app: &TestApp, query_id: &str) -> reqwest::Response {
    let r = post(app, NINE_MILLION_ROWS, &format!("?query_id={query_id}"), None).await;
    assert_eq!(r.status(), 200);
    r
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

/// The frame of DESIGN §10b, written out here from its template (not by the server's code).
fn expected_frame(tag: &str, message: &str) -> Vec<u8> {
    let len = message.len() + 1;
    format!("\r\n__exception__\r\n{tag}\r\n{message}\n{len} {tag}\r\n__exception__\r\n").into_bytes()
}

/// A strict reader of a tagged body, as seed 002 gives the rules: the tag from the header; a
/// frame only at the very end; its length field must match; the clean prefix before it.
fn split_tagged(body: &[u8], tag: &str) -> (Vec<u8>, Option<String>) {
    let close = format!(" {tag}\r\n__exception__\r\n");
    if !body.ends_with(close.as_bytes()) {
        return (body.to_vec(), None);
    }
    let open = format!("\r\n__exception__\r\n{tag}\r\n");
    let start = body
        .windows(open.len())
        .rposition(|w| w == open.as_bytes())
        .expect("a closing marker with our tag has its opening marker");
    let inner = &body[start + open.len()..body.len() - close.len()];
    let newline = inner.iter().rposition(|&b| b == b'\n').expect("message ends with a line feed");
    let (message, len) = (&inner[..newline], std::str::from_utf8(&inner[newline + 1..]).unwrap());
    assert_eq!(len.parse::<usize>().unwrap(), message.len() + 1, "the length field counts message + LF");
    assert_eq!(&body[start..], expected_frame(tag, std::str::from_utf8(message).unwrap()));
    (body[..start].to_vec(), Some(String::from_utf8(message.to_vec()).unwrap()))
}

fn tsv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.lines()
        .map(|line| {
            line.split('\t')
                .map(|f| unescape(f.as_bytes()).map_or(String::new(), |v| String::from_utf8(v).unwrap()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_streams_the_querys_rows() {
    let app = spawn_app(20_000).await;
    let expected = app.direct_rows(ALL).await;
    assert_eq!(expected.len(), 20_001, "header and rows");

    // The default: TabSeparatedWithNames, uncompressed.
    let r = post(&app, ALL, "", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").unwrap(), "text/tab-separated-values; charset=UTF-8");
    assert_eq!(header(&r, "x-clickhouse-format").unwrap(), "TabSeparatedWithNames");
    assert_eq!(header(&r, "content-encoding"), None);
    let tag = header(&r, "x-clickhouse-exception-tag").unwrap();
    assert!(tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{tag}");
    let body = r.bytes().await.unwrap();
    let (clean, failure) = split_tagged(&body, &tag);
    assert_eq!(failure, None);
    assert_eq!(tsv_rows(&clean), expected);

    let csv = post(&app, &format!("{ALL} FORMAT CSVWithNames"), "", None).await;
    assert_eq!(header(&csv, "x-clickhouse-format").unwrap(), "CSVWithNames");
    assert_eq!(parse_csv(&csv.bytes().await.unwrap()), expected);

    // JSON body, default_format, a trailing semicolon: one object per row, keys = the header.
    let r = app
        .http
        .post(format!("{}/v1/stream?default_format=JSONEachRow", app.api))
        .json(&serde_json::json!({"query": format!("{ALL};")}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type").unwrap(), "application/x-ndjson; charset=UTF-8");
    let text = r.text().await.unwrap();
    let names = &expected[0];
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| {
            assert!(l.starts_with(&format!("{{\"{}\":", names[0])), "keys in the columns' order: {l}");
            let object: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
            assert_eq!(object.len(), names.len());
            names.iter().map(|n| json_as_csv_field(&object[n])).collect()
        })
        .collect();
    assert_eq!(rows, expected[1..]);
}

/// Parquet's record batches as CSV records (header first), as `direct_rows` gives them.
fn parquet_rows(file: bytes::Bytes) -> Vec<Vec<String>> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let mut csv = forwarder::encode::csv::header(reader.schema());
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let mut rows = forwarder::encode::csv::BatchRows::new(&batch).unwrap();
        while rows.next_row(&mut csv).unwrap() {}
    }
    parse_csv(&csv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_streams_a_file_readers_take_and_a_failure_leaves_no_footer() {
    let app = spawn_app(20_000).await;
    let r = post(&app, &format!("{ALL} FORMAT Parquet"), "", Some("gzip, zstd")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").unwrap(), "application/vnd.apache.parquet");
    assert_eq!(header(&r, "content-encoding"), None, "compressed inside");
    let tag = header(&r, "x-clickhouse-exception-tag").unwrap();
    let body = r.bytes().await.unwrap();
    assert!(body.starts_with(b"PAR1") && body.ends_with(b"PAR1"));
    assert_eq!(split_tagged(&body, &tag).1, None);
    assert_eq!(parquet_rows(body), app.direct_rows(ALL).await);

    let r = post(&app, &format!("{FAILS_LATE} FORMAT Parquet"), "", None).await;
    assert_eq!(r.status(), 200);
    let tag = header(&r, "x-clickhouse-exception-tag").unwrap();
    let body = r.bytes().await.unwrap();
    let (clean, message) = split_tagged(&body, &tag);
    assert!(message.unwrap().contains("Divide by zero"));
    assert!(clean.starts_with(b"PAR1"));
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(clean));
    assert!(reader.is_err(), "no footer: no reader takes the rows before a failure for a whole file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_on_accept_encoding_and_the_query_id_echoed() {
    let app = spawn_app(5_000).await;
    let query = "SELECT uri, statusCode FROM demo.ecommerce.data WHERE statusCode >= 400 FORMAT CSVWithNames";
    let expected =
        app.direct_rows("SELECT uri, statusCode FROM demo.ecommerce.data WHERE statusCode >= 400").await;
    assert!(expected.len() > 100);

    let r = post(&app, query, "?query_id=report-2026.q1", Some("gzip")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-encoding").as_deref(), Some("gzip"));
    assert_eq!(header(&r, "x-forwarder-query-id").as_deref(), Some("report-2026.q1"));
    assert_eq!(parse_csv(&gunzip(&r.bytes().await.unwrap())), expected);

    let r = post(&app, query, "", Some("gzip;q=0.5, zstd")).await;
    assert_eq!(header(&r, "content-encoding").as_deref(), Some("zstd"));
    let id = header(&r, "x-forwarder-query-id").unwrap();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a query_id is made up when none is given: {id}");
    let plain = zstd::stream::decode_all(&r.bytes().await.unwrap()[..]).unwrap();
    assert_eq!(parse_csv(&plain), expected);

    let r = post(&app, query, "", Some("br, identity")).await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(parse_csv(&r.bytes().await.unwrap()), expected);
}

/// Fails on the rows after 00:10:00 (row 15,000 of 20,000): long after the first batch of
/// 8,192 rows went out with status 200.
const FAILS_LATE: &str = "SELECT uri, 1 / CASE WHEN eventdate >= TIMESTAMP '2026-01-01 00:10:00' THEN 0 ELSE 1 END AS one \
                          FROM demo.ecommerce.data";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_first_byte_ends_the_body_with_the_tagged_frame() {
    let app = spawn_app(20_000).await;
    let prefix = app.direct_rows("SELECT uri, 1 AS one FROM demo.ecommerce.data").await;
    for accept in [None, Some("gzip"), Some("zstd")] {
        let r = post(&app, FAILS_LATE, "?query_id=late-failure", accept).await;
        assert_eq!(r.status(), 200, "the failure comes after the status");
        let tag = header(&r, "x-clickhouse-exception-tag").unwrap();
        let body = r.bytes().await.unwrap();
        let body = match accept {
            None => body.to_vec(),
            Some("gzip") => gunzip(&body),
            Some(_) => zstd::stream::decode_all(&body[..]).unwrap(),
        };
        let (clean, message) = split_tagged(&body, &tag);
        let message = message.unwrap_or_else(|| panic!("no frame at the end ({accept:?})"));
        assert!(message.contains("Divide by zero"), "{message}");
        // The clean prefix is whole rows, the first ones of the result, and many of them.
        let rows = tsv_rows(&clean);
        assert!(rows.len() > 8_000, "{} rows before the failure", rows.len());
        assert!(rows.len() <= 15_001);
        assert_eq!(rows[..], prefix[..rows.len()]);
        // The library's own reader agrees.
        assert_eq!(
            forwarder::api::exception_frame::find_frame(&body, &tag),
            Some((clean.len(), message.clone()))
        );
    }
    // Failing on the first batch: nothing was sent yet, so it is an error status instead.
    let r = post(&app, "SELECT 1 / 0 AS x", "", None).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["msg"].as_str().unwrap().contains("Divide by zero"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_a_long_query_and_the_server_stays_up() {
    let app = spawn_app(3_000).await;
    let mut r = start_long(&app, "long-one").await;
    let tag = header(&r, "x-clickhouse-exception-tag").unwrap();
    let mut body = r.chunk().await.unwrap().unwrap().to_vec();

    // The id is taken while it runs (in this domain only).
    let again = post(&app, NINE_MILLION_ROWS, "?query_id=long-one", None).await;
    assert_eq!(again.status(), 409);
    let (_, acme_token) = auth_cli(&app, &["create-token", "--domain", "acme"]);
    let as_acme = reqwest::Client::new()
        .delete(format!("{}/v1/stream/long-one", app.api))
        .bearer_auth(acme_token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(as_acme.status(), 404, "another domain cannot see, nor stop, this stream");

    let stopped = app.http.delete(format!("{}/v1/stream/long-one", app.api)).send().await.unwrap();
    assert_eq!(stopped.status(), 200);
    let read_rest = async {
        while let Some(chunk) = r.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        body
    };
    let body = tokio::time::timeout(Duration::from_secs(60), read_rest).await.expect("the stream ends");
    let (clean, message) = split_tagged(&body, &tag);
    let message = message.expect("a cancelled stream ends with the frame");
    assert!(message.contains("cancelled") && message.contains("long-one"), "{message}");
    assert!(tsv_rows(&clean).len() < 9_000_001);

    // Gone from the running streams; the server answers and streams again.
    let gone = app.http.delete(format!("{}/v1/stream/long-one", app.api)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(reqwest::get(format!("{}/healthz", app.api)).await.unwrap().status(), 200);
    let r = post(&app, "SELECT 1 AS x", "?query_id=long-one", None).await;
    assert_eq!(r.text().await.unwrap(), "x\n1\n");
}

/// A client that goes away mid-stream leaves no query running: its `query_id` is free again
/// (the registry lets an id go only when its stream has ended) well before the query could
/// have finished, and the server goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_ends_its_query() {
    let app = spawn_app(3_000).await;
    let mut r = start_long(&app, "leaving").await;
    assert!(!r.chunk().await.unwrap().unwrap().is_empty());
    let still = post(&app, "SELECT 1 AS x", "?query_id=leaving", None).await;
    assert_eq!(still.status(), 409, "the id is taken while the first stream runs");
    const RUNNING: &str = "forwarder_streams_running ";
    assert_eq!(app.gauge(RUNNING).await, 1, "/metrics counts the stream");
    drop(r);

    let left = std::time::Instant::now();
    loop {
        let r = post(&app, "SELECT 1 AS x", "?query_id=leaving", None).await;
        if r.status() == 200 {
            assert_eq!(r.text().await.unwrap(), "x\n1\n");
            break;
        }
        assert_eq!(r.status(), 409);
        assert!(left.elapsed() < Duration::from_secs(30), "the query outlived its client by 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("the query ended {:?} after its client left", left.elapsed());
    assert_eq!(app.gauge(RUNNING).await, 0, "and /metrics shows it gone");
    assert_eq!(reqwest::get(format!("{}/healthz", app.api)).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_that_says_what_to_fix() {
    let app = spawn_app(100).await;
    let cases: [(&str, &str, u16, &str); 8] = [
        ("", "", 400, "send the query"),
        ("{\"sql\": \"SELECT 1\"}", "", 400, "query"),
        ("SELECT 1 FORMAT XML", "", 400, "unknown format \"XML\""),
        ("SELECT 1", "?default_format=Pretty", 400, "JSONEachRow"),
        ("SELECT nope FROM demo.ecommerce.data", "", 400, "nope"),
        ("SELECT 1", "?query_id=../etc", 400, "query_id"),
        ("SELECT 1", "?max_rows=5", 400, "unknown URL parameter"),
        ("DROP TABLE demo.ecommerce.data", "", 400, "only SELECT"),
    ];
    for (body, params, status, needle) in cases {
        let r = post(&app, body, params, None).await;
        assert_eq!(r.status().as_u16(), status, "{body} {params}");
        let answer: Value = r.json().await.unwrap();
        assert!(answer["msg"].as_str().unwrap().contains(needle), "{body} {params}: {answer}");
    }
    let r =
        reqwest::Client::new().post(format!("{}/v1/stream", app.api)).body("SELECT 1").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app.http.get(format!("{}/v1/stream", app.api)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.text().await.unwrap().contains("use POST"));
}
