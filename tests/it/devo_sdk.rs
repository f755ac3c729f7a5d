//! Devo's own Python SDK (`devo-sdk`, unmodified) against Forwarder over HTTPS, signing its
//! requests with an API key: submit an export, follow the job, steer it.

use std::process::Command;

use serde_json::{Value, json};

use crate::common::*;

/// A self-signed certificate for 127.0.0.1 and localhost, made with the openssl tool.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        // An end-entity certificate (CA:FALSE): rustls, as browsers, refuses a CA certificate
        // as a server's own.
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl tool is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devo_sdk_submits_follows_and_steers_jobs_over_https() {
    let tls_dir = std::env::temp_dir().join(format!("forwarder-tls-{}", uuid::Uuid::new_v4()));
    let (cert, key) = self_signed(&tls_dir);
    let tls = forwarder::config::TlsConfig { cert: cert.clone(), key };
    let app = spawn_app_with(2_000, move |c| c.tls = Some(tls)).await;
    let (_, out) = auth_cli(&app, &["create-key", "--domain", "devo"]);
    let (api_key, api_secret) = api_key_from(&out);
    let address = format!("{}/search/query", app.api.trim_start_matches("http://"));
    let ca = cert.to_string_lossy().to_string();
    let sdk = |args: &[&str]| {
        let out = Command::new(env("FORWARDER_TEST_DEVO_PYTHON"))
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/devo-sdk/client.py"))
            .args([args[0], &address, &api_key, &api_secret, &ca])
            .args(&args[1..])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let destination = json!({"type": "s3", "params": app.params(json!({"format": "gzip"}))}).to_string();
    let (ok, id, err) = sdk(&["submit", &from.to_string(), &to.to_string(), &destination]);
    assert!(ok, "the SDK submits: {err}");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    app.worker.try_run_next_job().await.unwrap().unwrap();

    let (ok, job, err) = sdk(&["job", &id]);
    assert!(ok, "{err}");
    let job: Value = serde_json::from_str(&job).unwrap();
    assert_eq!(job["object"]["status"], "COMPLETED", "{job:#}");
    assert!(
        job["object"]["owner"].as_str().unwrap().starts_with("apikey_"),
        "the key's id, as `auth list` shows it: {job:#}"
    );
    assert_eq!(job["object"]["eventsSent"], 2_000);
    assert_eq!(job["object"]["extra"]["paths"].as_array().unwrap().len(), app.keys().await.len());
    let (ok, jobs, _) = sdk(&["jobs"]);
    assert!(ok && jobs.contains(&id), "{jobs}");
    // Stopping a completed job is refused (409); the SDK turns any non-200 answer to a job
    // call into `{}`, and the job is unchanged.
    let (ok, refused, err) = sdk(&["stop", &id]);
    assert!(ok && refused == "{}", "{refused} {err}");
    let (_, job, _) = sdk(&["job", &id]);
    assert_eq!(serde_json::from_str::<Value>(&job).unwrap()["object"]["status"], "COMPLETED");
    let (ok, removed, err) = sdk(&["remove", &id]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&removed).unwrap()["object"]["status"], "REMOVED");

    // The operators' CLI speaks https too, trusting the server's certificate with --ca.
    let https = app.api.replacen("http://", "https://", 1);
    let (_, devo_token) = auth_cli(&app, &["create-token", "--domain", "devo"]);
    let cli = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_forwarder"))
            .args(["jobs", "show", &id, "--server", &https])
            .args(extra)
            .env("FORWARDER_TOKEN", devo_token.trim())
            .env_remove("FORWARDER_CA")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&["--ca", &ca]);
    assert!(ok && out.contains("REMOVED"), "{out}");
    let (ok, out) = cli(&[]);
    assert!(
        !ok && out.contains("certificate") && out.contains("--ca"),
        "an untrusted certificate is refused: {out}"
    );

    // Plain http is not served on an https listener.
    let plain = reqwest::Client::new().get(format!("{}/healthz", app.api)).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}
