//! Queries that would overflow the stack or allocate past the memory budget, and CSV tables
//! with quoted newlines: each is refused, fails its job with a clear message or runs, and the
//! server stays up.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// Submits `query` over the demo table's whole time range; runs the job when it is queued.
/// Returns the submission's answer and, when it was queued, the job as it ended.
async fn submit_and_run(app: &TestApp, query: &str) -> (reqwest::StatusCode, Value, Option<Value>) {
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let body = json!({"query": query, "from": from, "to": to,
                      "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}});
    let (status, answer) = tokio::time::timeout(Duration::from_secs(120), app.submit(body))
        .await
        .expect("an answer to the submission within 120 s");
    let Some(id) = answer["object"]["id"].as_str().filter(|_| status == 200) else {
        return (status, answer, None);
    };
    tokio::time::timeout(Duration::from_secs(300), app.worker.try_run_next_job())
        .await
        .expect("the job ends within 300 s")
        .unwrap()
        .unwrap();
    let job = app.job(id).await;
    (status, answer, Some(job))
}

async fn assert_up(app: &TestApp, what: &str) {
    assert_eq!(app.get("/healthz").await.0, 200, "{what}: the server is still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_queries_are_refused_or_run_and_the_server_stays_up() {
    let app = spawn_app(50).await;
    let chain =
        |n: usize, term: &dyn Fn(usize) -> String, op: &str| (0..n).map(term).collect::<Vec<_>>().join(op);
    let one = |_| "1".to_string();
    let shapes: Vec<(&str, String)> = vec![
        ("1+1+…+1, 1,000 terms", format!("SELECT {} AS n", chain(1_000, &one, "+"))),
        ("1+1+…+1, 10,000 terms", format!("SELECT {} AS n", chain(10_000, &one, "+"))),
        (
            "1,000 ORs",
            format!(
                "SELECT * FROM demo.ecommerce.data WHERE {}",
                chain(1_001, &|i| format!("statusCode = {i}"), " OR ")
            ),
        ),
        ("500 UNION ALL branches", chain(501, &|i| format!("SELECT {i} AS n"), " UNION ALL ")),
        (
            "200 nested subqueries",
            format!("{}SELECT 1 AS n{}", "SELECT n FROM (".repeat(200), ") AS t".repeat(200)),
        ),
        (
            "20 nested subqueries",
            format!("{}SELECT 1 AS n{}", "SELECT n FROM (".repeat(20), ") AS t".repeat(20)),
        ),
        ("10,000 nested parentheses", format!("SELECT {}1{} AS n", "(".repeat(10_000), ")".repeat(10_000))),
        ("1,000 nested calls", format!("SELECT {}1{} AS n", "abs(".repeat(1_000), ")".repeat(1_000))),
        ("10,000 subscripts", format!("SELECT make_array(1){} AS n", "[1]".repeat(10_000))),
        ("100,000 unary minuses", format!("SELECT {}1 AS n", "- ".repeat(100_000))),
        (
            "a 1 MB chain of ANDs",
            format!("SELECT 1 AS n WHERE {}", chain(100_000, &|_| "true".into(), " AND ")),
        ),
    ];
    for (what, query) in shapes {
        let (status, answer, job) = submit_and_run(&app, &query).await;
        match job {
            None => {
                assert_eq!(
                    (status.as_u16(), answer["status"].as_u64()),
                    (400, Some(101)),
                    "{what}: {answer}"
                );
                let msg = answer["msg"].as_str().unwrap();
                assert!(
                    msg.starts_with("the query is too deeply nested") && msg.contains("UNION ALL"),
                    "{what}: {msg}"
                );
            }
            Some(job) => assert_eq!(job["status"], "COMPLETED", "{what}: {job:#}"),
        }
        println!("{what:<32} {status} {}", answer["msg"].as_str().unwrap_or("queued, completed"));
        assert_up(&app, what).await;
    }
}

/// Rows whose first ones hold every kind of newline inside quotes, and backslashes (no escape
/// character in RFC 4180) before quotes and at the ends of values; then plain rows, far past
/// the first read buffers and the 10,000 rows schema inference reads.
fn awkward_rows() -> Vec<Vec<String>> {
    let awkward = [
        "line\nfeed",
        "crlf\r\nline",
        "bare\rreturn",
        "ends with a backslash\\",
        "backslash then quote \\\" then\nnewline",
        "\"quoted\", with a comma",
        "\n",
        "\r\n",
        "\r",
        "",
        "C:\\dir\\",
        "two\n\nblank\r\n\r\nlines",
        "unicode ü 日本 🚀\r\n",
    ];
    let mut rows: Vec<Vec<String>> = awkward
        .iter()
        .enumerate()
        .map(|(i, v)| vec![i.to_string(), v.to_string(), (i * 7).to_string()])
        .collect();
    rows.extend((awkward.len()..12_000).map(|i| {
        let text = match i % 4 {
            0 => format!("row {i}\nwith a newline"),
            1 => format!("row {i}"),
            2 => format!("row {i}\r\nwith \"quotes\",\rand\na backslash\\"),
            _ => format!("row {i}, no newline"),
        };
        vec![i.to_string(), text, (i * 7).to_string()]
    }));
    rows
}

fn csv_bytes(header: &[&str], rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.into_inner().unwrap()
}

/// Adds a CSV table `name` holding `bytes` beside the demo table.
fn add_csv_table(config: &mut forwarder::config::Config, name: &str, file: &str, bytes: &[u8]) {
    let catalog = config.catalog.clone().unwrap();
    let path = catalog.parent().unwrap().join(file);
    std::fs::write(&path, bytes).unwrap();
    let entry = format!(
        "\n[[tables]]\nname = \"{name}\"\nlocation = {:?}\nformat = \"csv\"\n",
        path.display().to_string()
    );
    std::fs::write(&catalog, std::fs::read_to_string(&catalog).unwrap() + &entry).unwrap();
}

/// The rows of every part of a completed job, header first (checked equal in every part).
async fn exported_rows(app: &TestApp, job: &Value) -> Vec<Vec<String>> {
    assert_eq!(job["status"], "COMPLETED", "{job:#}");
    let mut header = None;
    let mut rows = Vec::new();
    for part in job["extra"]["parts"].as_array().unwrap() {
        let (bytes, _) = app.object(part["key"].as_str().unwrap()).await;
        let mut records = parse_csv(&gunzip(&bytes));
        let h = records.remove(0);
        assert!(header.get_or_insert_with(|| h.clone()) == &h, "every part starts with the same header");
        rows.extend(records);
    }
    rows.insert(0, header.unwrap());
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_tables_with_quoted_newlines_read_as_rfc_4180_says() {
    let rows = awkward_rows();
    let app = spawn_app_with(10, |c| {
        add_csv_table(c, "t.awkward", "awkward.csv", &csv_bytes(&["id", "text", "n"], &rows))
    })
    .await;
    let (status, answer, job) =
        submit_and_run(&app, "SELECT id, text, n, n - id * 7 AS zero FROM t.awkward ORDER BY id").await;
    let job = job.unwrap_or_else(|| panic!("{status} {answer}"));
    let mut back = exported_rows(&app, &job).await;
    assert_eq!(back.remove(0), vec!["id", "text", "n", "zero"]);
    assert_eq!(back.len(), rows.len(), "every row once");
    for (got, want) in back.iter().zip(&rows) {
        assert!(got[..3] == want[..] && got[3] == "0", "a row read back differs: got {got:?}, want {want:?}");
    }
    assert_up(&app, "after the CSV export").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_reads_back_every_csv_part_it_writes() {
    // A first export of awkward values, read from NDJSON, as Forwarder writes them.
    let lines: Vec<String> = awkward_rows()
        .iter()
        .map(|r| json!({"id": r[0].parse::<i64>().unwrap(), "text": r[1], "n": r[2]}).to_string())
        .collect();
    let first = spawn_app_with(10, |c| {
        let catalog = c.catalog.clone().unwrap();
        let file = catalog.parent().unwrap().join("awkward.json");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let entry = format!(
            "\n[[tables]]\nname = \"t.awkward\"\nlocation = {:?}\nformat = \"json\"\n",
            file.display().to_string()
        );
        std::fs::write(&catalog, std::fs::read_to_string(&catalog).unwrap() + &entry).unwrap();
    })
    .await;
    let (_, _, job) = submit_and_run(&first, "SELECT id, text, n FROM t.awkward ORDER BY id").await;
    let job = job.unwrap();
    let key = job["extra"]["parts"][0]["key"].as_str().unwrap().to_string();
    let (part, _) = first.object(&key).await;
    let written = gunzip(&part);
    let want = parse_csv(&written);
    // That part, registered as a table, reads back equal, and exports equal again.
    let second = spawn_app_with(10, |c| add_csv_table(c, "t.part", "part.csv", &written)).await;
    let (status, answer, job) = submit_and_run(&second, "SELECT * FROM t.part").await;
    let job = job.unwrap_or_else(|| panic!("{status} {answer}"));
    let back = exported_rows(&second, &job).await;
    assert_eq!(back.len(), want.len(), "every row once");
    assert!(back == want, "the part Forwarder wrote reads back equal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_the_memory_budget_fail_their_job_and_the_server_stays_up() {
    let app = spawn_app_with(20_000, |c| c.worker.query_memory_mb = 1).await;
    let over_budget = "the query needs more memory than one query may use (worker.query_memory_mb)";
    // Functions whose output dwarfs their input, over a literal and over every row.
    let functions = [
        "SELECT repeat('x', 2000000000) AS s",
        "SELECT lpad('x', 2147483647) AS s",
        "SELECT repeat(arrow_cast('x', 'LargeUtf8'), 1000000000000) AS s",
        "SELECT repeat(uri, 100000000) AS s FROM demo.ecommerce.data",
        "SELECT lpad(uri, 2147483647) AS s FROM demo.ecommerce.data",
        "SELECT repeat(arrow_cast(uri, 'LargeUtf8'), 1000000000000) AS s FROM demo.ecommerce.data",
        "SELECT rpad(uri, 100000000, 'é') AS s FROM demo.ecommerce.data",
        "SELECT replace(userAgent, '', repeat('y', 100000)) AS s FROM demo.ecommerce.data",
        "SELECT array_repeat(cookie, 10000000) AS a FROM demo.ecommerce.data",
        "SELECT range(0, 1000000000000) AS a",
        "SELECT generate_series(0, statusCode * 10000000) AS a FROM demo.ecommerce.data",
        "SELECT concat(s, s, s, s, s, s, s, s, s, s) AS s FROM (SELECT repeat('x', 1000000) AS s FROM demo.ecommerce.data)",
        // The operator, nested: each level multiplies a row's size by 8.
        "SELECT s || s || s || s || s || s || s || s AS s FROM (SELECT s || s || s || s || s || s || s || s AS s FROM \
         (SELECT uri || uri || uri || uri || uri || uri || uri || uri AS s FROM demo.ecommerce.data))",
    ];
    // Operators that hold their input: they must stop at the pool's limit too (or spill).
    let holders = [
        "SELECT string_agg(userAgent, ',') AS s FROM demo.ecommerce.data",
        "SELECT array_agg(cookie) AS a FROM demo.ecommerce.data",
        "SELECT cookie, uri, array_agg(userAgent) AS a FROM demo.ecommerce.data GROUP BY cookie, uri",
        "SELECT * FROM demo.ecommerce.data ORDER BY cookie, userAgent",
    ];
    for query in functions.iter().chain(&holders) {
        let (status, answer, job) = submit_and_run(&app, query).await;
        let job = job.unwrap_or_else(|| panic!("{query}: refused: {status} {answer}"));
        let error = job["error"][0].as_str().unwrap_or_default();
        let fails = job["status"] == "FAILED" && error.starts_with(over_budget);
        if functions.contains(query) {
            assert!(fails, "{query}: {job:#}");
        } else {
            assert!(fails || job["status"] == "COMPLETED", "{query}: {job:#}");
        }
        println!("{:<9} {query}: {}", job["status"].as_str().unwrap(), &error[..error.len().min(200)]);
        assert_up(&app, query).await;
    }
    assert_eq!(app.open_multipart_uploads().await, 0, "no upload left open");
}
