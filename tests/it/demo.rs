//! The README's first command, `forwarder demo`, as a new user runs it: the binary, nothing
//! else installed, the export through the HTTP API into the in-process S3 endpoint.

use std::io::Read as _;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_exports_the_demo_table_and_keeps_serving_with_keep() {
    let dir = std::env::temp_dir().join(format!("forwarder-it-demo-{}", uuid::Uuid::new_v4()));
    let rows = 3_000;
    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .args(["demo", "--rows", &rows.to_string(), "--part-mb", "1", "--keep", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let wait_for_serving = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("Still serving") {
                return;
            }
        }
        panic!("the demo ended before serving on:\n{printed}");
    };
    tokio::time::timeout(Duration::from_secs(120), wait_for_serving)
        .await
        .expect("the demo finishes its export");
    assert!(printed.contains("\"status\": \"COMPLETED\""), "{printed}");
    assert!(printed.contains("Notification email"), "{printed}");
    assert!(!printed.contains(forwarder::demo::SECRET_KEY), "the request is printed with its secret masked");

    // The objects in the bucket are the table's rows, each part with the header.
    let bucket = dir.join("s3").join(forwarder::demo::BUCKET);
    let mut data_rows = 0;
    for part in std::fs::read_dir(&bucket).unwrap().map(|e| e.unwrap().path()) {
        let name = part.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".csv.gz") {
            continue;
        }
        let mut csv = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&part).unwrap())
            .read_to_string(&mut csv)
            .unwrap();
        let mut records = csv::Reader::from_reader(csv.as_bytes());
        assert!(records.headers().unwrap().iter().any(|h| h == "eventdate"), "{name} starts with the header");
        data_rows += records.records().count();
    }
    assert_eq!(data_rows, rows);

    // --keep: the API answers with the token the server wrote, as the demo says.
    let api = printed.lines().find_map(|l| l.strip_prefix("Forwarder API: ")).unwrap().to_string();
    let token = std::fs::read_to_string(dir.join("data").join("initial-token")).unwrap();
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("{api}/search/jobs"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["object"][0]["status"], "COMPLETED", "{listed}");

    // Ctrl-C ends it cleanly.
    let pid = demo.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), demo.wait()).await.expect("it stops").unwrap();
    assert!(status.success(), "{status}");
}
