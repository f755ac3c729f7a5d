//! `forwarder export` end to end against a spawned server: the file holds the query's rows
//! (compressed as its name says); after a mid-stream failure it holds exactly the clean prefix
//! and the command exits 1 with the server's message; Ctrl-C (SIGINT) cancels the query on the
//! server and leaves no file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;

fn export(app: &TestApp, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forwarder"));
    cmd.arg("export")
        .args(["--server", &app.api])
        .env("FORWARDER_TOKEN", &app.token)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(app: &TestApp, args: &[&str]) -> Output {
    export(app, args).output().unwrap()
}

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("forwarder-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_the_rows_compressed_as_the_file_name_says() {
    let app = spawn_app(20_000).await;
    let query = "SELECT * FROM demo.ecommerce.data";
    let expected = app.direct_rows(query).await;
    let dir = out_dir();
    let gz = dir.join("result.csv.gz");
    let out = run(&app, &["--query", query, "-o", gz.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("20000 rows written"), "{stderr}");
    assert_eq!(parse_csv(&gunzip(&std::fs::read(&gz).unwrap())), expected);

    let zst = dir.join("result.tsv.zst");
    let out = run(&app, &["--query", query, "-o", zst.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tsv = zstd::stream::decode_all(&std::fs::read(&zst).unwrap()[..]).unwrap();
    assert!(tsv.starts_with(b"eventdate\tclientIpAddress\t"));
    assert_eq!(tsv.iter().filter(|&&b| b == b'\n').count(), 20_001);
    assert_eq!(files_in(&dir), ["result.csv.gz", "result.tsv.zst"], "no .part file is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_error_leaves_exactly_the_clean_prefix_and_exits_1() {
    let app = spawn_app(20_000).await;
    let fails_late = "SELECT uri, 1 / CASE WHEN eventdate >= TIMESTAMP '2026-01-01 00:10:00' THEN 0 ELSE 1 END \
                      AS one FROM demo.ecommerce.data";
    // What the server sends before its frame, read straight from the API.
    let r = app.http.post(format!("{}/v1/stream", app.api)).body(fails_late).send().await.unwrap();
    let tag = r.headers()["x-clickhouse-exception-tag"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    let (clean, _) = forwarder::api::exception_frame::find_frame(&body, &tag).expect("the query fails late");
    assert!(clean > 100_000);

    let dir = out_dir();
    let path = dir.join("result.tsv");
    let out = run(&app, &["--query", fails_late, "-o", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Divide by zero") && stderr.contains("8192 rows"), "{stderr}");
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written, body[..clean], "the file is the clean prefix, byte for byte");
    assert!(!written.windows(13).any(|w| w == b"__exception__"));
    assert_eq!(files_in(&dir), ["result.tsv"]);
}

/// A query the server refuses before its first byte, and a token it does not know: exit 1 with
/// the server's own words (what to fix), and no file, not even an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_query_or_token_exits_1_with_the_servers_message_and_leaves_no_file() {
    let app = spawn_app(100).await;
    let dir = out_dir();
    let path = dir.join("result.csv");
    let out = run(&app, &["--query", "SELECT nope FROM demo.ecommerce.data", "-o", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nope") && stderr.contains("400"), "the server's message and status: {stderr}");

    let out = export(&app, &["--query", "SELECT 1", "-o", path.to_str().unwrap()])
        .env("FORWARDER_TOKEN", "not-a-token")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("not-a-token"), "the token is not shown: {stderr}");
    assert_eq!(files_in(&dir), Vec::<String>::new(), "no file, no .part file");
}

async fn wait_for_bytes(path: &Path, child: &mut Child) {
    for _ in 0..600 {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("the export ended early ({status}): {stderr}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing reached {} in 30 s", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_query_on_the_server_and_leaves_no_file() {
    let app = spawn_app(3_000).await;
    let long = "SELECT a.uri, b.statusCode FROM demo.ecommerce.data a CROSS JOIN demo.ecommerce.data b";
    for keep in [false, true] {
        let dir = out_dir();
        let path = dir.join("long.csv");
        let id = format!("cli-long-{keep}");
        let mut args = vec!["--query", long, "-o", path.to_str().unwrap(), "--query-id", &id];
        if keep {
            args.push("--keep-partial");
        }
        let mut child = export(&app, &args).spawn().unwrap();
        // The .part file fills once more than the hold-back window has arrived.
        wait_for_bytes(&dir.join("long.csv.part"), &mut child).await;
        let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        assert!(stderr.contains("the query was cancelled on the server"), "{stderr}");
        // The server no longer runs it.
        let r = app.http.delete(format!("{}/v1/stream/{id}", app.api)).send().await.unwrap();
        assert_eq!(r.status(), 404);
        if keep {
            assert_eq!(files_in(&dir), ["long.csv"]);
            let kept = std::fs::read(&path).unwrap();
            assert!(kept.ends_with(b"\n"), "only whole rows are kept");
            let rows = parse_csv(&kept);
            assert_eq!(rows[0], ["uri", "statusCode"]);
            assert!(rows.len() > 1 && rows.iter().all(|r| r.len() == 2));
        } else {
            assert_eq!(files_in(&dir), Vec::<String>::new(), "no partial file");
        }
    }
}
