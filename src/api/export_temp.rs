//! `POST /v1/data/export-temp` (seed `001_…`): runs a query and writes its result as Parquet
//! or JSON Lines files to a bucket, a container or the server's file root, and answers once
//! the files are written. No job is queued: the export runs inside the request, on the query
//! runtime the streams use, and counts against the domain's streams
//! (`server.max_streams_per_domain`).
//!
//! It ends with every file written or none: a failure, `[export_temp] request_timeout`, or a
//! client that goes away stops it, and what it wrote is removed (the cleanup runs in its own
//! task, so it finishes even when nobody waits for the answer).

use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::export_temp_request::{ExportTempRequest, codes, in_our_names, parse};
use super::idle::{Activity, busy_until};
use super::stream::query_runtime;
use super::stream_registry::Refusal;
use super::{AppState, Caller};
use crate::job::{DestinationType, Format, ResumePoint};
use crate::part::{PartOptions, RotationPolicy};
use crate::query::{QueryError, QueryWindow};
use crate::upload::{DestinationSettings, UploadError};
use crate::worker::direct::{self, Outcome, Place, RunError};
use crate::worker::{PartWriter, Start};

/// A refused or failed export, as the seed's envelope tells it.
struct Failure {
    http: StatusCode,
    code: u16,
    message: String,
}

impl Failure {
    fn new(http: StatusCode, code: u16, message: impl Into<String>) -> Self {
        Self { http, code, message: message.into() }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.http.as_u16(),
            "success": false,
            "exception": {"error_code": self.code, "message": self.message},
            "data": null,
        });
        (self.http, axum::Json(body)).into_response()
    }
}

/// `POST /v1/data/export-temp`.
#[utoipa::path(
    post, path = "/v1/data/export-temp", tag = "export-temp",
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "`query`, `storage_type` (S3, GCS, Azure, File), `bucket`, `credentials`, `directory_path`, `format` \
            (Parquet, Jsonl), `mode` (multi_file, single_file), `row_group_size`, `target_file_size_bytes`, \
            `max_row_groups_per_file`, `options` {`endpoint`, `allow_http`, `virtual_hosted_style`, `region`}, `include_metrics`",
        example = json!({"query": "SELECT * FROM demo.ecommerce.data", "storage_type": "S3", "bucket": "my-bucket",
                          "directory_path": "exports/all", "credentials": {"access_key": "AKIA…", "secret_key": "…"},
                          "format": "Parquet", "include_metrics": true})),
    responses(
        (status = 200, description = "written: `{\"code\": 200, \"success\": true, \"exception\": null, \"data\": {\"elapsed_time\", \
            \"export_result\": {\"file_path\", \"num_row_groups\", \"total_row_count\", \"total_uncompressed_byte_size\", \
            \"average_uncompressed_row_group_size\", \"files\"}, \"metrics\"}}`", body = serde_json::Value),
        (status = 400, description = "the same envelope, `success: false`, `exception.error_code` 341–351 saying what to fix", body = serde_json::Value),
        (status = 401, description = "no credential, or the store refused the request's credentials (envelope)", body = serde_json::Value),
        (status = 408, description = "past `[export_temp] request_timeout`; what was written is removed (353)", body = serde_json::Value),
        (status = 409, description = "an object is already at a file's key (352)", body = serde_json::Value),
        (status = 429, description = "the domain already runs its most streams and exports on this server (354)", body = serde_json::Value),
        (status = 502, description = "the store failed (356)", body = serde_json::Value)
    )
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    activity: Option<Extension<Activity>>,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request = match parse(&body, &state.config.limits) {
        Ok(request) => request,
        Err(e) => return Failure::new(StatusCode::BAD_REQUEST, e.code, e.msg).into_response(),
    };
    if let Err(refused) = check_destination(&state, &request).await {
        return refused.into_response();
    }
    let id = uuid::Uuid::new_v4();
    let registered = match state.streams.register(&caller.domain, &format!("export-temp-{id}")) {
        Ok(registered) => registered,
        Err(refusal) => {
            let msg = match refusal {
                Refusal::DomainBusy(most) => format!(
                    "this domain already runs {most} streams and exports on this server \
                     (server.max_streams_per_domain): wait for one to end and send the request again"
                ),
                Refusal::IdTaken => "a fresh export id was taken: send the request again".to_string(),
            };
            let mut response = Failure::new(StatusCode::TOO_MANY_REQUESTS, codes::BUSY, msg).into_response();
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, 1.into());
            return response;
        }
    };
    let kind = request.destination.kind;
    tracing::info!(export = %id, domain = caller.domain, storage = kind.name(), "export-temp started");
    let cancel = registered.cancel.clone();
    // Dropped with this handler (the client went away): the run stops and cleans up.
    let _stop_when_dropped = cancel.clone().drop_guard();
    let secrets: Vec<String> = request.secrets.all().map(|s| s.expose().to_string()).collect();
    let include_metrics = request.include_metrics;
    let mut run = tokio::spawn(run_export(state.clone(), request, id, cancel.clone(), registered));
    let timeout = state.config.export_temp.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let busy = busy_until(activity.as_ref().map(|Extension(a)| a), &mut run);
    let result = match tokio::time::timeout_at(deadline, busy).await {
        Ok(joined) => joined,
        Err(_) => {
            cancel.cancel();
            let _ = (&mut run).await;
            let limit = humantime_serde::re::humantime::format_duration(timeout);
            tracing::warn!(export = %id, "export-temp stopped at export_temp.request_timeout");
            return Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    codes::TIMED_OUT,
                    format!(
                        "the export did not finish within {limit} (export_temp.request_timeout) and was stopped; \
                         nothing it wrote was kept. Export less (narrow the query), or ask the operator to raise \
                         export_temp.request_timeout"
                    ),
                )
                .into_response();
        }
    };
    let answer = match result {
        Ok(Ok((outcome, file_path))) => {
            return success(&outcome, file_path, started.elapsed(), include_metrics).into_response();
        }
        Ok(Err(failure)) => failure,
        Err(e) => {
            tracing::error!(export = %id, error = %e, "the export-temp task failed");
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, codes::EXPORT_FAILED, "the export could not run")
        }
    };
    // Belt and braces: no message leaves with a credential of the request in it.
    let message = secrets.iter().fold(answer.message, |m, s| m.replace(s.as_str(), "[redacted]"));
    tracing::info!(export = %id, status = answer.http.as_u16(), error = %message, "export-temp failed");
    Failure { message, ..answer }.into_response()
}

/// What can be refused before anything runs: an endpoint inside the server's network, a
/// `File` export on a server without a file root.
async fn check_destination(state: &AppState, request: &ExportTempRequest) -> Result<(), Failure> {
    if let Some(endpoint) = &request.destination.endpoint {
        crate::upload::endpoint::check_endpoint(endpoint, &state.config.s3.allowed())
            .await
            .map_err(|msg| Failure::new(StatusCode::BAD_REQUEST, codes::BAD_OPTIONS, in_our_names(&msg)))?;
    }
    if request.destination.kind == DestinationType::File && state.config.destinations.file.root.is_none() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            codes::FILE_NOT_CONFIGURED,
            "this server writes no files: storage_type File needs the operator to set [destinations.file] root \
             in the configuration; use S3, GCS or Azure",
        ));
    }
    Ok(())
}

/// Plans the query, builds the destination and runs the export; holds the domain's stream
/// slot until whatever it wrote is complete or removed.
async fn run_export(
    state: AppState,
    request: ExportTempRequest,
    id: uuid::Uuid,
    cancel: tokio_util::sync::CancellationToken,
    registered: super::stream_registry::Registered,
) -> Result<(Outcome, String), Failure> {
    let config = &state.config;
    let settings = DestinationSettings {
        s3: config.s3.clone(),
        upload: config.upload.clone(),
        destinations: config.destinations.clone(),
        metrics: state.metrics.clone(),
        // Downloads are the async exports' own destination, never a caller's.
        download_dir: None,
    };
    let uploader = settings
        .uploader(&format!("export-temp-{id}"), &request.destination, &request.secrets)
        .await
        .map_err(|msg| {
            Failure::new(StatusCode::BAD_REQUEST, codes::DESTINATION_REFUSED, in_our_names(&msg))
        })?;
    let engine = state.engine.clone();
    let query = request.query.clone();
    let planned =
        query_runtime().spawn(async move { engine.run(&query, QueryWindow::default(), 0, None).await });
    let run = planned
        .await
        .map_err(|_| {
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, codes::EXPORT_FAILED, "the query could not run")
        })?
        .map_err(|e| match e {
            QueryError::Execution(msg) => Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::QUERY_FAILED,
                format!("query failed: {msg}"),
            ),
            other => Failure::new(StatusCode::BAD_REQUEST, codes::BAD_QUERY, other.to_string()),
        })?;
    let options = PartOptions {
        encoding: request.encoding,
        chunk_size: (config.upload.part_size_mib as usize) << 20,
        level: config.worker.compression_level,
        zstd_level: config.worker.zstd_level,
        row_group_bytes: request.row_group_size,
        ..PartOptions::new(Format::Plain)
    };
    let policy = RotationPolicy {
        max_bytes: request.target_file_size_bytes,
        max_age: None,
        max_row_groups: request.max_row_groups_per_file,
    };
    let start = Start { next_index: 1, rows_total: 0, resume: ResumePoint::default() };
    let prefix = request.destination.prefix.clone();
    let schema = run.stream.schema();
    let writer = PartWriter::new(id, prefix.clone(), options, policy, &schema, None, start);
    let (place, file_path) = match &request.single_key {
        Some(key) => (Place::Single(key.clone()), uploader.url(key)),
        None => (Place::Parts, uploader.url(&prefix)),
    };
    let concurrency = config.upload.concurrency;
    let ran = query_runtime()
        .spawn(direct::run(uploader, writer, run.stream, place, concurrency, cancel))
        .await
        .map_err(|_| {
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, codes::EXPORT_FAILED, "the export could not run")
        })?;
    drop(registered);
    match ran {
        Ok(outcome) => Ok((outcome, file_path)),
        Err(e) => Err(failed(e)),
    }
}

/// A run that ended without its files, told to the caller.
fn failed(e: RunError) -> Failure {
    let (http, code) = match &e {
        RunError::Query(_) => (StatusCode::BAD_REQUEST, codes::QUERY_FAILED),
        RunError::Source(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::QUERY_FAILED),
        RunError::Upload(upload) => refused_by_destination(upload),
        RunError::Encode(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::EXPORT_FAILED),
        RunError::Cancelled => (StatusCode::CONFLICT, codes::CANCELLED),
    };
    let message = match e {
        RunError::Cancelled => {
            "the export was cancelled (DELETE /v1/stream/…); nothing it wrote was kept".into()
        }
        other => format!("{}; nothing the export wrote was kept", in_our_names(&other.to_string())),
    };
    Failure::new(http, code, message)
}

/// The destination's refusals that are the caller's to fix (credentials, bucket, an object
/// in the way) are 4xx; anything else is the store failing (502).
fn refused_by_destination(e: &UploadError) -> (StatusCode, u16) {
    let http = match e.code.as_deref() {
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "NotSignedUp"
            | "Unauthenticated"
            | "AuthenticationFailed",
        ) => StatusCode::UNAUTHORIZED,
        Some("AccessDenied" | "AllAccessDisabled" | "PermissionDenied") => StatusCode::FORBIDDEN,
        Some("NoSuchBucket" | "NotFound" | "ContainerNotFound") => StatusCode::NOT_FOUND,
        Some("AlreadyExists" | "PreconditionFailed") => StatusCode::CONFLICT,
        _ => return (StatusCode::BAD_GATEWAY, codes::EXPORT_FAILED),
    };
    (http, codes::DESTINATION_REFUSED)
}

/// The seed's answer: where the files are, their row groups and sizes; `metrics` on request.
fn success(
    outcome: &Outcome,
    file_path: String,
    elapsed: Duration,
    include_metrics: bool,
) -> impl IntoResponse {
    let rows: u64 = outcome.files.iter().map(|f| f.rows).sum();
    let groups: Vec<u64> = outcome.files.iter().flat_map(|f| f.row_group_sizes.iter().copied()).collect();
    let uncompressed: u64 = if groups.is_empty() {
        outcome.files.iter().map(|f| f.encoded_bytes).sum()
    } else {
        groups.iter().sum()
    };
    let files: Vec<Value> = outcome
        .files
        .iter()
        .map(|f| {
            json!({"file_path": f.url, "size_bytes": f.bytes, "row_count": f.rows,
                   "num_row_groups": f.row_group_sizes.len()})
        })
        .collect();
    let mut data = json!({
        "elapsed_time": elapsed.as_secs_f64(),
        "export_result": {
            "file_path": file_path,
            "num_row_groups": groups.len(),
            "total_row_count": rows,
            "total_uncompressed_byte_size": uncompressed,
            "average_uncompressed_row_group_size": if groups.is_empty() { 0 } else { uncompressed / groups.len() as u64 },
            "files": files,
        },
    });
    if include_metrics {
        let ms = |d: Duration| d.as_millis() as u64;
        let bytes_written: u64 = outcome.files.iter().map(|f| f.bytes).sum();
        data["metrics"] = json!({
            "peak_memory_bytes": outcome.peak_memory_bytes,
            "bytes_written": bytes_written,
            "files_written": outcome.files.len(),
            "rows_per_second": (rows as f64 / elapsed.as_secs_f64().max(1e-3)).round(),
            "timings": {
                "total_ms": ms(elapsed),
                "query_ms": ms(outcome.query_time),
                "encode_ms": ms(outcome.encode_time),
                "upload_ms": ms(outcome.upload_time),
            },
        });
    }
    axum::Json(json!({"code": 200, "success": true, "exception": null, "data": data}))
}
