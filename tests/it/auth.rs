//! Authentication, tenancy and secrets: Devo-signed API keys and bearer tokens created and
//! revoked with `forwarder auth`, one domain never seeing another's jobs, and the secrets a
//! request carries appearing nowhere but inside the encryption.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::common::*;
use crate::export::QUERY;

/// A request signed as Devo's SDK signs it.
pub(crate) async fn signed(
    app: &TestApp,
    method: &str,
    path: &str,
    body: &str,
    key: &str,
    secret: &str,
    ts: i64,
) -> (u16, Value) {
    let ts = ts.to_string();
    let sign = forwarder::api::sign(secret, key, body.as_bytes(), &ts);
    let http = reqwest::Client::new();
    let url = format!("{}{path}", app.api);
    let req = if method == "POST" {
        http.post(url).body(body.to_string()).header("content-type", "application/json")
    } else {
        http.get(url)
    };
    let r = req
        .header("x-logtrust-apikey", key)
        .header("x-logtrust-timestamp", &ts)
        .header("x-logtrust-sign", sign)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_keys_and_tokens_each_see_only_their_domain() {
    let app = spawn_app(1_000).await;
    let anonymous = reqwest::Client::new();
    for path in ["/search/jobs", "/search/job/00000000-0000-0000-0000-000000000000", "/metrics"] {
        let r = anonymous.get(format!("{}{path}", app.api)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} needs credentials");
    }
    for health in ["/healthz", "/readyz"] {
        assert_eq!(
            anonymous.get(format!("{}{health}", app.api)).send().await.unwrap().status(),
            200,
            "{health} is open"
        );
    }

    // An operator creates an API key for domain acme.
    let (ok, out) = auth_cli(&app, &["create-key", "--domain", "acme"]);
    assert!(ok, "{out}");
    let (key, secret) = api_key_from(&out);

    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let body = json!({"query": QUERY, "from": from, "to": to, "destination": {"type": "s3", "params": app.params(json!({"format": "gzip"}))}}).to_string();
    let now = forwarder::job::now_ms();
    let (status, answer) = signed(&app, "POST", "/search/query", &body, &key, &secret, now).await;
    assert_eq!(status, 200, "{answer}");
    let acme_job = answer["object"]["id"].as_str().unwrap().to_string();
    let (status, job) =
        signed(&app, "GET", &format!("/search/job/{acme_job}"), "", &key, &secret, now + 1).await;
    // The owner is the key's id, as `forwarder auth list` shows it.
    let (ok, listed) = auth_cli(&app, &["list"]);
    let owner = job["object"]["owner"].as_str().unwrap();
    assert_eq!(status, 200);
    assert!(ok && owner.starts_with("apikey_") && listed.contains(owner), "{owner} in {listed}");

    // A replayed submission, a stale timestamp or a wrong signature is refused.
    let (status, answer) = signed(&app, "POST", "/search/query", &body, &key, &secret, now).await;
    assert_eq!(status, 401, "a replayed submission is refused: {answer}");
    assert!(answer["msg"].as_str().unwrap().contains("already used"), "{answer}");
    let (status, _) =
        signed(&app, "GET", &format!("/search/job/{acme_job}"), "", &key, &secret, now + 1).await;
    assert_eq!(status, 200, "reads may repeat within the window, as Devo's SDK sends them");
    let (status, answer) = signed(&app, "GET", "/search/jobs", "", &key, &secret, now - 600_000).await;
    assert!(status == 401 && answer["msg"].as_str().unwrap().contains("clock"), "{answer}");
    let (status, _) = signed(&app, "GET", "/search/jobs", "", &key, "not-the-secret", now + 2).await;
    assert_eq!(status, 401);

    // The default domain's token sees acme's job exactly as it sees a job that does not exist.
    let (status, theirs) = app.get(&format!("/search/job/{acme_job}")).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status_unknown, nothing) = app.get(&format!("/search/job/{unknown}")).await;
    assert_eq!((status, status_unknown), (reqwest::StatusCode::NOT_FOUND, reqwest::StatusCode::NOT_FOUND));
    assert_eq!(
        theirs["msg"].as_str().unwrap().replace(&acme_job, "ID"),
        nothing["msg"].as_str().unwrap().replace(&unknown, "ID")
    );
    for steer in ["stop", "start", "remove"] {
        assert_eq!(
            app.get(&format!("/search/job/{steer}/{acme_job}")).await.0,
            404,
            "{steer} of another domain's job"
        );
    }
    let (_, list) = app.get("/search/jobs").await;
    assert_eq!(list["object"], json!([]), "another domain's jobs are not listed");

    // A token for acme sees acme's job; revoking it and the key shuts them out at once.
    let (ok, token) = auth_cli(&app, &["create-token", "--domain", "acme"]);
    assert!(ok);
    let token = token.trim();
    let as_acme =
        |path: String| reqwest::Client::new().get(format!("{}{path}", app.api)).bearer_auth(token).send();
    assert_eq!(as_acme(format!("/search/job/{acme_job}")).await.unwrap().status(), 200);
    let lower = reqwest::Client::new()
        .get(format!("{}/search/job/{acme_job}", app.api))
        .header("authorization", format!("bearer {token}"));
    assert_eq!(lower.send().await.unwrap().status(), 200, "the scheme is case-insensitive");
    // Revoked by what the operator was given (the token, the API key) as well as by id.
    assert!(auth_cli(&app, &["revoke", token]).0, "revoke by the token");
    assert!(auth_cli(&app, &["revoke", &key]).0, "revoke by the API key");
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .args(["auth", "revoke", "fwd_not-a-token-we-made"])
        .env("FORWARDER_DATA_DIR", app.dir.join("data"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && said.contains("no live credential") && !said.contains("fwd_not-a-token"),
        "{said}"
    );
    // Run without the server's configuration, it makes no new, empty store.
    let elsewhere = std::env::temp_dir().join(format!("forwarder-it-nostore-{}", uuid::Uuid::new_v4()));
    let lost = std::process::Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .args(["auth", "list"])
        .env("FORWARDER_DATA_DIR", &elsewhere)
        .output()
        .unwrap();
    assert!(!lost.status.success() && String::from_utf8_lossy(&lost.stderr).contains("no job store at"));
    assert!(!elsewhere.exists());
    assert_eq!(as_acme(format!("/search/job/{acme_job}")).await.unwrap().status(), 401);
    let (_, list) = auth_cli(&app, &["list"]);
    assert!(
        list.starts_with("ID") && list.lines().filter(|l| l.contains("acme")).all(|l| l.ends_with("REVOKED")),
        "{list}"
    );
    let (status, _) = signed(&app, "GET", "/search/jobs", "", &key, &secret, forwarder::job::now_ms()).await;
    assert_eq!(status, 401);
}

/// Collects every log line of the process.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Every log line of this test's process from now on (nextest runs one test per process),
    /// with the server's own filter at its most verbose: RUST_LOG=trace.
    pub fn capture() -> Self {
        let logs = Self::default();
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(forwarder::telemetry::filter("trace"))
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .init();
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_in_no_response_log_line_error_email_metric_or_database_column() {
    let logs = LogBuffer::capture();

    // Emails go through an SMTP server that requires AUTH, with a password of our own.
    let smtp_user = format!("forwarder-{}", uuid::Uuid::new_v4().simple());
    let smtp_password = format!("SMTPPASSWORD{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(2_000, |c| {
        c.smtp.url = Some(env("FORWARDER_TEST_SMTP_AUTH_URL"));
        c.smtp.username = Some(smtp_user.clone());
        c.smtp.password = Some(forwarder::secret::Secret::new(smtp_password.clone()));
    })
    .await;
    let secret_key = format!("SECRETKEY{}", uuid::Uuid::new_v4().simple());
    let password = format!("ZIPPASSWORD{}", uuid::Uuid::new_v4().simple());
    let session = format!("SESSIONTOKEN{}", uuid::Uuid::new_v4().simple());
    let access_key = format!("ACCESSKEY{}", &uuid::Uuid::new_v4().simple().to_string()[..11]);
    // An API key whose secret signs one request, beside the bearer token every other call carries.
    let (_, out) = auth_cli(&app, &["create-key", "--domain", "default"]);
    let (api_key, api_secret) = api_key_from(&out);
    let ts = forwarder::job::now_ms().to_string();
    let signed = reqwest::Client::new()
        .get(format!("{}/search/jobs", app.api))
        .header("x-logtrust-apikey", &api_key)
        .header("x-logtrust-timestamp", &ts)
        .header("x-logtrust-sign", forwarder::api::sign(&api_secret, &api_key, b"", &ts))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let secrets = [
        secret_key.as_str(),
        password.as_str(),
        session.as_str(),
        access_key.as_str(),
        app.token.as_str(),
        api_secret.as_str(),
        smtp_password.as_str(),
    ];
    let params = |bucket: &str| {
        let mut p = app
            .params(json!({"format": "zip", "file.password": password, "aws.sessiontoken": session,
                                      "notification.email": "ops@example.com"}));
        p["aws.secretkey"] = json!(secret_key);
        p["aws.accesskey"] = json!(access_key);
        p["aws.bucket"] = json!(bucket);
        p
    };
    let (from, to) = forwarder::query::demo::time_range(app.rows);
    let mut responses = Vec::new();
    let mut ids = Vec::new();
    // One job that completes, one that fails (no such bucket), one refused (bad format).
    for bucket in [app.bucket.clone(), "no-such-bucket-for-secrets".to_string()] {
        let (status, answer) = app.submit(json!({"query": QUERY, "from": from, "to": to, "destination": {"type": "s3", "params": params(&bucket)}})).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["object"]["id"].as_str().unwrap().to_string());
        responses.push(answer.to_string());
        app.worker.try_run_next_job().await.unwrap().unwrap();
    }
    let mut bad = params(&app.bucket);
    bad["format"] = json!("gzip");
    let (status, refused) = app
        .submit(json!({"query": QUERY, "from": from, "to": to, "destination": {"type": "s3", "params": bad}}))
        .await;
    assert_eq!(status, 400);
    responses.push(refused.to_string());

    let completed = app.job(&ids[0]).await;
    let failed = app.job(&ids[1]).await;
    assert_eq!(
        (completed["status"].as_str(), failed["status"].as_str()),
        (Some("COMPLETED"), Some("FAILED")),
        "{failed:#}"
    );
    responses.push(completed.to_string());
    responses.push(failed.to_string());
    responses.push(app.get("/search/jobs").await.1.to_string());
    responses.push(app.http.get(format!("{}/metrics", app.api)).send().await.unwrap().text().await.unwrap());
    for id in &ids {
        responses.push(email_about(id, "").await);
    }
    let logins = std::fs::read_to_string(env("FORWARDER_TEST_SMTP_LOGINS")).unwrap_or_default();
    assert!(
        logins.lines().any(|l| l == format!("{smtp_user} {smtp_password}")),
        "the emails went out with the SMTP password"
    );
    // The raw database files, WAL included.
    let mut database = Vec::new();
    for entry in std::fs::read_dir(app.dir.join("data")).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("jobs.sqlite") {
            database.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    let logs = logs.text();
    assert!(logs.contains(&ids[0]) && logs.contains("NoSuchBucket"), "the log was captured");
    // Every line a job's run writes names the job.
    for event in ["job started", "part uploaded", "job ended", "notification email sent"] {
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(event)).collect();
        assert!(
            !lines.is_empty() && lines.iter().all(|l| ids.iter().any(|id| l.contains(&format!("job={id}")))),
            "{event}: {lines:#?}"
        );
    }
    for secret in secrets {
        for r in &responses {
            assert!(!r.contains(secret), "a response or email holds a secret: {r}");
        }
        assert!(
            !logs.contains(secret),
            "the log holds {secret}: {}",
            logs.lines()
                .find(|l| l.contains(secret))
                .map(|l| {
                    let i = l.find(secret).unwrap();
                    &l[i.saturating_sub(300)..(i + 60).min(l.len())]
                })
                .unwrap_or_default()
        );
        assert!(
            !database.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the database holds a secret in plain text"
        );
    }
    // Removing a job forgets its sealed credentials.
    assert_eq!(app.get(&format!("/search/job/remove/{}", ids[1])).await.0, 200);
}

/// Devo's signature covers the key, the body and the timestamp, not the path: a captured
/// signed read of a job must not stop or remove it within the clock-skew window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_read_cannot_be_replayed_on_another_path() {
    let app = spawn_app(100).await;
    let (_, out) = auth_cli(&app, &["create-key", "--domain", "default"]);
    let (key, secret) = api_key_from(&out);
    let id = app.submit_export(QUERY, json!({"format": "gzip"})).await;
    // Signed in milliseconds, as a client that is not Devo's SDK may sign (odd: not a whole second).
    let now = forwarder::job::now_ms() | 1;
    let read = format!("/search/job/{id}");
    let (status, job) = signed(&app, "GET", &read, "", &key, &secret, now).await;
    assert_eq!((status, job["object"]["status"].as_str()), (200, Some("CREATED")), "{job}");

    // The same headers (same key, timestamp and signature: the body is empty in both) on
    // the calls that steer the job.
    for steer in ["remove", "stop", "start"] {
        let (status, answer) =
            signed(&app, "GET", &format!("/search/job/{steer}/{id}"), "", &key, &secret, now).await;
        assert_eq!(status, 401, "{steer}: {answer}");
        assert!(answer["msg"].as_str().unwrap().contains("another method or path"), "{answer}");
    }
    // Nor with the signature in upper case, which matches it as well.
    let ts = now.to_string();
    let upper = forwarder::api::sign(&secret, &key, b"", &ts).to_uppercase();
    let r = reqwest::Client::new()
        .get(format!("{}/search/job/remove/{id}", app.api))
        .header("x-logtrust-apikey", &key)
        .header("x-logtrust-timestamp", &ts)
        .header("x-logtrust-sign", upper)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.job(&id).await["status"], "CREATED", "the job is untouched");

    // The read itself may be repeated, as Devo's SDK polls; a new signature steers the job.
    let (status, _) = signed(&app, "GET", &read, "", &key, &secret, now).await;
    assert_eq!(status, 200);
    // Devo's SDK signs whole seconds, so all its calls in one second share a signature: one
    // may serve another path just after its first use (the SDK's next call), not later.
    let second = forwarder::job::now_ms() / 1000 * 1000;
    assert_eq!(signed(&app, "GET", &read, "", &key, &secret, second).await.0, 200);
    assert_eq!(
        signed(&app, "GET", "/search/jobs", "", &key, &secret, second).await.0,
        200,
        "the SDK's next call"
    );
    tokio::time::sleep(forwarder::api::SHARED_SECOND + std::time::Duration::from_millis(200)).await;
    let (status, answer) =
        signed(&app, "GET", &format!("/search/job/remove/{id}"), "", &key, &secret, second).await;
    assert_eq!(status, 401, "a whole-second signature replayed later: {answer}");
    assert_eq!(app.job(&id).await["status"], "CREATED", "the job is untouched");

    let (status, answer) =
        signed(&app, "GET", &format!("/search/job/stop/{id}"), "", &key, &secret, now + 2).await;
    assert_eq!((status, answer["object"]["status"].as_str()), (200, Some("STOPPED")), "{answer}");
}
