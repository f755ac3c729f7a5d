//! `forwarder export`: the command-line client of `POST /v1/stream`. Streams a query's result
//! into a file with a progress bar, and trusts no byte before the end proves it clean: the
//! last [`MAX_FRAME`] bytes are held back, so that when the server ends the body with its
//! tagged exception frame, only the rows before it reach the file (and the command exits 1
//! with the server's message). Ctrl-C stops the query on the server
//! (`DELETE /v1/stream/{query_id}`) and leaves no file unless `--keep-partial`.
//!
//! The file is written as `<output>.part` and renamed when the stream ends; a `.gz` or `.zst`
//! output is compressed here, as the rows arrive.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::exception_frame::{MAX_FRAME, TAG_HEADER, find_frame};
use crate::compress::{self, Compression, Compressor};

#[derive(Args)]
pub struct ExportArgs {
    /// The server's base URL.
    #[arg(long, env = "FORWARDER_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Bearer token (e.g. the contents of data_dir/initial-token, or one from `forwarder auth create-token`).
    #[arg(long, env = "FORWARDER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM certificate(s) to trust, besides the system's, for an https server.
    #[arg(long, env = "FORWARDER_CA")]
    pub ca: Option<PathBuf>,
    /// The SQL query. A trailing `FORMAT …` clause wins over the format the file name implies.
    #[arg(long, short)]
    pub query: String,
    /// The file to write: `.csv`, `.tsv`, `.jsonl` or `.parquet` (the format), optionally
    /// followed by `.gz` or `.zst` (compressed as it is written).
    #[arg(long, short)]
    pub output: PathBuf,
    /// CSVWithNames, TabSeparatedWithNames, JSONEachRow or Parquet (default: from the file name,
    /// else TSV).
    #[arg(long)]
    pub format: Option<String>,
    /// The query's id on the server (default: a new UUID); `DELETE /v1/stream/{id}` stops it.
    #[arg(long)]
    pub query_id: Option<String>,
    /// On Ctrl-C or a broken connection, keep the rows received so far in the file.
    #[arg(long)]
    pub keep_partial: bool,
}

/// Ctrl-C stopped the export: the caller exits 130, as a shell expects.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(String);

/// The compression and the format a file name implies: `result.csv.gz` is gzip'd CSV.
fn from_file_name(path: &Path) -> (Compression, Option<&'static str>) {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let (compression, inner) = match name.rsplit_once('.') {
        Some((rest, "gz" | "gzip")) => (Compression::Gzip, rest.to_string()),
        Some((rest, "zst" | "zstd")) => (Compression::Zstd, rest.to_string()),
        _ => (Compression::Plain, name.clone()),
    };
    let format = match inner.rsplit_once('.').map(|(_, ext)| ext) {
        Some("csv") => Some("CSVWithNames"),
        Some("tsv" | "tab") => Some("TabSeparatedWithNames"),
        Some("jsonl" | "ndjson" | "json") => Some("JSONEachRow"),
        Some("parquet") => Some("Parquet"),
        _ => None,
    };
    (compression, format)
}

/// The bytes received but not yet written: the last [`MAX_FRAME`], which could still turn out
/// to be the server's exception frame.
#[derive(Default)]
struct HoldBack {
    held: Vec<u8>,
}

impl HoldBack {
    /// Takes `data` in; gives back what can no longer be part of a frame at the end.
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(data);
        let release = self.held.len().saturating_sub(MAX_FRAME);
        self.held.drain(..release).collect()
    }

    /// At the end of the body: the clean rest, and the server's message if it ended with a frame.
    fn finish(self, tag: &str) -> (Vec<u8>, Option<String>) {
        match find_frame(&self.held, tag) {
            Some((start, message)) => (self.held[..start].to_vec(), Some(message)),
            None => (self.held, None),
        }
    }
}

/// The file being written, through its compressor; renamed into place only at the end.
struct Output {
    part: PathBuf,
    sink: Box<dyn Compressor>,
    lines: u64,
    bytes: u64,
    /// Rows are lines (TSV, CSV, JSON Lines), not in Parquet.
    counts_rows: bool,
}

impl Output {
    fn create(path: &Path, compression: Compression, counts_rows: bool) -> anyhow::Result<Self> {
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let file = File::create(&part).with_context(|| format!("cannot create {}", part.display()))?;
        let options =
            compress::Options { deflate_level: 6, zstd_level: 3, password: None, entry_name: String::new() };
        let sink = compress::compressor(compression, &options, BufWriter::with_capacity(1 << 20, file))?;
        Ok(Self { part, sink, lines: 0, bytes: 0, counts_rows })
    }

    fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.bytes += data.len() as u64;
        if self.counts_rows {
            self.lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        self.sink.write(data).with_context(|| format!("writing {}", self.part.display()))
    }

    /// Ends the file and gives it its name.
    fn keep(self, path: &Path) -> anyhow::Result<()> {
        self.sink.finish().with_context(|| format!("writing {}", self.part.display()))?;
        std::fs::rename(&self.part, path)
            .with_context(|| format!("renaming {} into place", self.part.display()))
    }

    /// What the file holds: rows, or bytes for Parquet.
    fn summary(&self) -> String {
        if self.counts_rows {
            format!("{} rows", self.lines.saturating_sub(1))
        } else {
            format!("{} bytes", self.bytes)
        }
    }

    fn discard(self) {
        drop(self.sink);
        let _ = std::fs::remove_file(&self.part);
    }
}

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let token = args.token.filter(|t| !t.trim().is_empty());
    let http = crate::cli_http::client_trusting(args.ca.as_deref())?.connect_timeout(Duration::from_secs(10));
    let http = http.build().context("cannot set up the HTTP client")?;
    let base = args.server.trim_end_matches('/').to_string();
    let (compression, implied) = from_file_name(&args.output);
    let query_id = args.query_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut url = reqwest::Url::parse(&format!("{base}/v1/stream"))
        .with_context(|| format!("--server {base} is not a URL"))?;
    url.query_pairs_mut().append_pair("query_id", &query_id);
    if let Some(format) = args.format.as_deref().or(implied) {
        url.query_pairs_mut().append_pair("default_format", format);
    }
    let authorized = |req: reqwest::RequestBuilder| match &token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let response = authorized(http.post(url).body(args.query.clone()))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {base}"))?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let msg = body["msg"].as_str().unwrap_or("request refused");
        if status == reqwest::StatusCode::UNAUTHORIZED && token.is_none() {
            bail!("the server wants a token (pass --token or set FORWARDER_TOKEN): {msg}");
        }
        bail!("the server refused the export ({status}): {msg}");
    }
    let tag = response
        .headers()
        .get(TAG_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .with_context(|| format!("{base} answered without {TAG_HEADER}: is it a Forwarder server?"))?;

    let counts_rows = response.headers().get("x-clickhouse-format").is_none_or(|f| f != "Parquet");
    let mut output = Output::create(&args.output, compression, counts_rows)?;
    let bar = progress_bar();
    // Kept open until the server is told of a Ctrl-C: closing it first would end the query
    // before the DELETE could.
    let mut response = response;
    let result = receive(&mut response, &tag, &mut output, &bar).await;
    bar.finish_and_clear();
    match result {
        Ok(None) => {
            let summary = output.summary();
            output.keep(&args.output)?;
            eprintln!("{summary} written to {}", args.output.display());
            Ok(())
        }
        Ok(Some(message)) => {
            let summary = output.summary();
            output.keep(&args.output)?;
            bail!(
                "the server reported an error after {summary}: {message}\n{} holds the {summary} received before it",
                args.output.display()
            )
        }
        Err(Stop::Interrupted) => {
            let cancel = authorized(http.delete(format!("{base}/v1/stream/{query_id}")))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let told = match cancel {
                Ok(r) if r.status().is_success() => "the query was cancelled on the server",
                Ok(_) => "the query had already ended on the server",
                Err(_) => "the server could not be told (closing the connection stops the query too)",
            };
            drop(response);
            let kept = keep_or_discard(output, &args.output, args.keep_partial)?;
            Err(Interrupted(format!("interrupted: {told}; {kept}")).into())
        }
        Err(Stop::Broken(why)) => {
            let kept = keep_or_discard(output, &args.output, args.keep_partial)?;
            bail!("the stream broke before its end ({why}); {kept}")
        }
    }
}

fn keep_or_discard(output: Output, path: &Path, keep: bool) -> anyhow::Result<String> {
    if keep {
        let summary = output.summary();
        output.keep(path)?;
        Ok(format!("{} holds the {summary} received (--keep-partial)", path.display()))
    } else {
        output.discard();
        Ok("no file written (--keep-partial keeps the rows received)".to_string())
    }
}

enum Stop {
    Interrupted,
    Broken(String),
}

/// Reads the body into `output` until it ends; the server's message if it ended with a frame.
async fn receive(
    response: &mut reqwest::Response,
    tag: &str,
    output: &mut Output,
    bar: &ProgressBar,
) -> Result<Option<String>, Stop> {
    let mut hold = HoldBack::default();
    let mut received = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let chunk = tokio::select! {
            _ = &mut ctrl_c => {
                // No frame comes before the end, so these are rows: the whole ones are kept
                // (for --keep-partial), the one cut short is not.
                let rest = std::mem::take(&mut hold.held);
                let whole = match rest.iter().rposition(|&b| b == b'\n') {
                    Some(last) if output.counts_rows => &rest[..=last],
                    _ if output.counts_rows => &[][..],
                    _ => &rest[..],
                };
                let _ = output.write(whole);
                return Err(Stop::Interrupted);
            }
            chunk = response.chunk() => chunk.map_err(|e| Stop::Broken(e.to_string()))?,
        };
        let Some(chunk) = chunk else { break };
        received += chunk.len() as u64;
        let clean = hold.push(&chunk);
        output.write(&clean).map_err(|e| Stop::Broken(format!("{e:#}")))?;
        bar.set_position(received);
        bar.set_message(output.summary());
    }
    let (rest, failure) = hold.finish(tag);
    output.write(&rest).map_err(|e| Stop::Broken(format!("{e:#}")))?;
    Ok(failure)
}

/// Bytes, rows, elapsed time and rate, on stderr when it is a terminal.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {bytes} received ({bytes_per_sec}), {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::exception_frame::{frame, new_tag};

    #[test]
    fn file_names_imply_compression_and_format() {
        assert_eq!(from_file_name(Path::new("out/result.csv.gz")), (Compression::Gzip, Some("CSVWithNames")));
        assert_eq!(from_file_name(Path::new("r.JSONL.zst")), (Compression::Zstd, Some("JSONEachRow")));
        assert_eq!(from_file_name(Path::new("r.tsv")), (Compression::Plain, Some("TabSeparatedWithNames")));
        assert_eq!(from_file_name(Path::new("result")), (Compression::Plain, None));
    }

    #[test]
    fn the_hold_back_releases_all_but_a_frames_length_and_strips_the_frame() {
        let tag = new_tag();
        let rows: Vec<u8> = (0..20_000).flat_map(|i| format!("row {i}\n").into_bytes()).collect();
        let body = [rows.clone(), frame(&tag, "query failed: boom")].concat();
        let mut hold = HoldBack::default();
        let mut written = Vec::new();
        for piece in body.chunks(7_777) {
            written.extend(hold.push(piece));
            assert!(hold.held.len() <= MAX_FRAME);
        }
        let (rest, failure) = hold.finish(&tag);
        written.extend(rest);
        assert_eq!(failure.as_deref(), Some("query failed: boom"));
        assert_eq!(written, rows);

        // Another tag's frame is data like any other.
        let mut hold = HoldBack::default();
        let mut written = hold.push(&body);
        let (rest, failure) = hold.finish(&new_tag());
        written.extend(rest);
        assert_eq!((written, failure), (body, None));
    }
}
