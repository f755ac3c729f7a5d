//! `forwarder jobs …`: the operators' view of a running server, through its own API (the
//! Devo paths), so that it works against any node and needs nothing but the URL and a token.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args)]
pub struct JobsArgs {
    /// The server's base URL.
    #[arg(long, env = "FORWARDER_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// Bearer token (e.g. the contents of data_dir/initial-token, or one from `forwarder auth create-token`).
    #[arg(long, env = "FORWARDER_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM certificate(s) to trust, besides the system's, for an https server (one with a
    /// self-signed certificate, or a private CA's).
    #[arg(long, env = "FORWARDER_CA", global = true)]
    pub ca: Option<std::path::PathBuf>,
    /// Print the job (or jobs) as the API gives them (its `object`), instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this status (CREATED, RUNNING, COMPLETED, STOPPED, FAILED, REMOVED).
        #[arg(long)]
        status: Option<String>,
        /// Only jobs whose name starts with this.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one job: status, progress, parts and errors.
    Show {
        /// The job's id, as `jobs list` shows it, or its first characters (8 or more).
        id: JobRef,
        /// Keep watching, with a progress line, until the job is no longer CREATED or RUNNING;
        /// exits 1 if it FAILED.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a job: its open part is uploaded, it can be started again.
    Stop { id: JobRef },
    /// Start a stopped job again, from where it stopped.
    Start { id: JobRef },
    /// Remove a job: in-flight uploads are aborted, its credentials forgotten.
    Remove { id: JobRef },
}

/// A job's id, whole or its first characters: only hexadecimal digits and dashes, so that it
/// cannot turn into another path.
#[derive(Debug, Clone)]
pub struct JobRef(String);

impl std::str::FromStr for JobRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s.len() < 8 || s.len() > 36 || !s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err("a job id (a UUID, as `jobs list` shows it) or its first 8 or more characters".into());
        }
        Ok(JobRef(s))
    }
}

impl JobRef {
    /// The whole id: as given, or the one job of the caller's whose id starts with it.
    async fn resolve(&self, client: &Client) -> anyhow::Result<uuid::Uuid> {
        if let Ok(id) = uuid::Uuid::parse_str(&self.0) {
            return Ok(id);
        }
        let jobs = client.get("/search/jobs?limit=10000").await?;
        let matching: Vec<&str> = jobs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["id"].as_str())
            .filter(|id| id.starts_with(&self.0))
            .collect();
        match matching.as_slice() {
            [one] => Ok(uuid::Uuid::parse_str(one)?),
            [] => bail!("no job id starts with {}", self.0),
            many => bail!("{} jobs have ids starting with {}: give more of the id", many.len(), self.0),
        }
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.map_err(|e| {
            // reqwest's own message is only "error sending request": say what went wrong.
            let mut why = format!("cannot reach the server at {}", self.base);
            let mut cause: Option<&dyn std::error::Error> = Some(&e);
            while let Some(c) = cause {
                why.push_str(&format!(": {c}"));
                cause = c.source();
            }
            if why.contains("certificate") {
                why.push_str(" (for a self-signed or private certificate, pass it with --ca FILE)");
            }
            anyhow::anyhow!(why)
        })?;
        let status = res.status();
        let body: Value =
            res.json().await.with_context(|| format!("{url} answered {status} without JSON"))?;
        let msg = body["msg"].as_str().unwrap_or("request refused");
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let hint =
                if self.token.is_some() { "check the token" } else { "pass --token or set FORWARDER_TOKEN" };
            bail!("the server refused the credentials ({hint}): {msg}");
        }
        if !status.is_success() {
            bail!("{msg}");
        }
        Ok(body["object"].clone())
    }
}

pub async fn run(args: JobsArgs) -> anyhow::Result<()> {
    // An empty FORWARDER_TOKEN is no token at all.
    let token = args.token.filter(|t| !t.trim().is_empty());
    let http = crate::cli_http::client_trusting(args.ca.as_deref())?;
    let client =
        Client { http: http.build().context("cannot set up the HTTP client")?, base: args.server, token };
    let (path, wait) = match &args.command {
        JobsCommand::List { status, name } => {
            // Encoded, so that a name holding `&`, `#` or spaces is sent as it is.
            let mut url = reqwest::Url::parse("http://server/search/jobs").expect("a valid URL");
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = status {
                    q.append_pair("status", s);
                }
                if let Some(n) = name {
                    q.append_pair("name", n);
                }
            }
            (format!("{}?{}", url.path(), url.query().unwrap_or_default()), false)
        }
        JobsCommand::Show { id, wait } => (format!("/search/job/{}", id.resolve(&client).await?), *wait),
        JobsCommand::Stop { id } => (format!("/search/job/stop/{}", id.resolve(&client).await?), false),
        JobsCommand::Start { id } => (format!("/search/job/start/{}", id.resolve(&client).await?), false),
        JobsCommand::Remove { id } => (format!("/search/job/remove/{}", id.resolve(&client).await?), false),
    };
    let mut object = client.get(&path).await?;
    if matches!(args.command, JobsCommand::Stop { .. } | JobsCommand::Remove { .. })
        && object["status"] == "RUNNING"
    {
        eprintln!(
            "requested: the worker ends the job at its next checkpoint (follow it with `jobs show --wait`)"
        );
    }
    if wait {
        let mut err = std::io::stderr();
        while matches!(object["status"].as_str(), Some("CREATED" | "RUNNING")) {
            let _ = write!(err, "\r{}   ", progress_line(&object));
            let _ = err.flush();
            tokio::time::sleep(Duration::from_secs(1)).await;
            object = client.get(&path).await?;
        }
        let _ = writeln!(err, "\r{}   ", progress_line(&object));
    }
    let out = if args.json {
        serde_json::to_string_pretty(&object)?
    } else if let Some(jobs) = object.as_array() {
        jobs_table(jobs)
    } else {
        job_details(&object)
    };
    println!("{out}");
    // A script that waited can tell a failed export from a finished one.
    if wait && object["status"] == "FAILED" {
        bail!("job {} FAILED", object["id"].as_str().unwrap_or("?"));
    }
    Ok(())
}

fn progress_line(job: &Value) -> String {
    let pct = job["extra"]["percentComplete"].as_u64().map(|p| format!("{p:>3}%  ")).unwrap_or_default();
    let parts = job["extra"]["parts"].as_array().map_or(0, Vec::len);
    format!(
        "{}  {pct}{} rows sent, {parts} part{}",
        job["status"].as_str().unwrap_or("?"),
        job["eventsSent"].as_u64().unwrap_or(0),
        if parts == 1 { "" } else { "s" }
    )
}

fn when(ms: &Value) -> String {
    ms.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn jobs_table(jobs: &[Value]) -> String {
    let mut rows =
        vec![["ID", "STATUS", "ROWS SENT", "PARTS", "DONE", "CREATED", "QUERY"].map(String::from).to_vec()];
    for j in jobs {
        let full = j["query"].as_str().unwrap_or("");
        let mut query: String = full.chars().take(50).collect();
        if query.len() < full.len() {
            query.push('…');
        }
        rows.push(vec![
            j["id"].as_str().unwrap_or("").to_string(),
            j["status"].as_str().unwrap_or("").to_string(),
            j["eventsSent"].as_u64().unwrap_or(0).to_string(),
            j["extra"]["parts"].as_array().map_or(0, Vec::len).to_string(),
            j["extra"]["percentComplete"].as_u64().map_or_else(|| "-".into(), |p| format!("{p}%")),
            when(&j["extra"]["createdAt"]),
            query,
        ]);
    }
    if jobs.is_empty() {
        return "no jobs".into();
    }
    align(&rows)
}

/// Left-aligned columns, two spaces apart.
pub(crate) fn align(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn job_details(j: &Value) -> String {
    let field = |k: &str, v: String| vec![k.to_string(), v];
    let mut rows = vec![
        field("id", j["id"].as_str().unwrap_or("").into()),
        field("status", j["status"].as_str().unwrap_or("").into()),
        field("name", j["friendlyName"].as_str().unwrap_or("").into()),
        field("query", j["query"].as_str().unwrap_or("").into()),
        field("progress", progress_line(j)),
        field("rows generated", j["eventGenerated"].as_u64().unwrap_or(0).to_string()),
        field("last datetime", when(&j["lastDatetime"])),
        field("created", when(&j["extra"]["createdAt"])),
        field("started", when(&j["extra"]["startedAt"])),
        field("finished", when(&j["extra"]["finishedAt"])),
    ];
    for e in j["error"].as_array().into_iter().flatten() {
        rows.push(field("error", e.as_str().unwrap_or("").into()));
    }
    let mut out = align(&rows);
    let parts = j["extra"]["parts"].as_array().cloned().unwrap_or_default();
    let paths = j["extra"]["paths"].as_array().cloned().unwrap_or_default();
    if !parts.is_empty() {
        let mut table = vec![["PART", "ROWS", "BYTES", "PATH"].map(String::from).to_vec()];
        for (p, path) in parts.iter().zip(paths.iter().map(Some).chain(std::iter::repeat(None))) {
            table.push(vec![
                p["index"].to_string(),
                p["rows"].to_string(),
                p["bytes"].to_string(),
                path.and_then(Value::as_str).unwrap_or("").to_string(),
            ]);
        }
        out.push_str("\n\n");
        out.push_str(&align(&table));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_line_up_and_show_progress() {
        let job = json!({"id": "j1", "status": "RUNNING", "query": "SELECT 1", "eventsSent": 1200,
            "extra": {"parts": [{"index": 1, "rows": 1200, "bytes": 5000}], "paths": ["s3://b/k1"], "percentComplete": 40, "createdAt": 0}});
        let table = jobs_table(std::slice::from_ref(&job));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("STATUS"), lines[1].find("RUNNING"));
        assert!(lines[1].contains("40%") && lines[1].contains("1970-01-01 00:00:00"), "{table}");
        assert_eq!(progress_line(&job), "RUNNING   40%  1200 rows sent, 1 part");
        let details = job_details(&job);
        assert!(details.contains("s3://b/k1") && details.contains("PART"), "{details}");
    }
}
