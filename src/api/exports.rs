//! Async exports with download (the seed's `/v1/queries` paths). A query is registered once
//! (`POST /v1/queries`); each export of it is a job of destination type `download`, run by
//! the worker like any other (claims, leases, crash recovery, metrics), which writes one file
//! under `export.temp_dir/<export id>/`. The caller polls its progress, downloads the file
//! (with HTTP range requests, served by tower-http's `ServeFile`) and may delete it; what is
//! not deleted is removed `export.ttl` after it completed ([`super::exports_files`]).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use super::exports_files::{remove_export_dir, used_bytes};
use super::exports_request::{
    ExportFormat, codes, parse_export_request, parse_id, parse_registration, tenant_domain,
};
use super::{ApiError, AppState, Caller};
use crate::job::{
    Destination, DestinationType, DownloadOptions, Job, JobSpec, JobStatus, Progress, now_ms, part_extension,
};
use crate::store::{Outcome, RegisteredQuery};

/// `POST /v1/queries`: checks the query (it must plan) and keeps it; answers its id.
#[utoipa::path(
    post, path = "/v1/queries", tag = "exports", params(("X-Tenant-ID" = Option<String>, Header, description = "narrows the domain: `acme` or `acme/<tenant>` for a caller of `acme`")),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "`query` (must plan), `from`, `to` (as for `/search/query`; no `to`: up to when each export is asked for)",
        example = json!({"query": "SELECT * FROM demo.ecommerce.data", "from": 1767225600, "to": 1767312000})),
    responses(
        (status = 201, description = "`{\"executionId\", \"query\", \"from\", \"to\"}`", body = serde_json::Value),
        (status = 400, description = "a body to fix (321 not JSON, 322 query, 323 from/to, 326 unknown field)", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "an `X-Tenant-ID` outside the caller's domain (328)", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let domain = tenant_domain(&caller, &headers)?;
    let r = parse_registration(&body)?;
    state.engine.check(&r.query).await.map_err(|e| ApiError::bad_request(codes::BAD_QUERY, e.to_string()))?;
    let q = RegisteredQuery {
        id: Uuid::new_v4(),
        domain,
        query: r.query,
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        created_at_ms: now_ms(),
    };
    state.queries.register_query(&q).await?;
    let body = json!({"executionId": q.id, "query": q.query, "from": q.from_ms, "to": q.to_ms});
    Ok((StatusCode::CREATED, Json(body)))
}

/// `POST /v1/queries/{id}/export/async`: queues the export and answers at once.
#[utoipa::path(
    post, path = "/v1/queries/{id}/export/async", tag = "exports",
    params(("id" = String, Path, description = "the executionId of a registered query"), ("X-Tenant-ID" = Option<String>, Header, description = "narrows the domain: `acme` or `acme/<tenant>` for a caller of `acme`")),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "all optional: `format` CSV | JSON (JSON Lines) | PARQUET, `includeHeader` (true), `compress` (false)",
        example = json!({"format": "CSV", "includeHeader": true, "compress": true})),
    responses(
        (status = 202, description = "queued: `{\"exportId\", \"executionId\", \"status\": \"PENDING\", \"format\"}`", body = serde_json::Value),
        (status = 400, description = "a body to fix (324 format, 325 booleans, 326 unknown field, 327 id)", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "no such query in the caller's domain", body = crate::api::openapi::ErrorBody),
        (status = 507, description = "the files take `export.disk_quota_mb` already (329)", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let domain = tenant_domain(&caller, &headers)?;
    let query_id = parse_id("a query id (executionId)", &id)?;
    let request = parse_export_request(&body)?;
    let query = state.queries.registered_query(&domain, query_id).await?.ok_or_else(|| {
        ApiError::not_found(&format!("query {query_id} (register it with POST /v1/queries)"))
    })?;
    refuse_over_quota(&state).await?;
    let settings = &state.config.export;
    let (format, parquet_compression) = request.packing();
    let export_id = Uuid::new_v4();
    let now = now_ms();
    let destination = Destination {
        kind: DestinationType::Download,
        bucket: None,
        account: None,
        region: None,
        endpoint: None,
        path_style: false,
        prefix: format!("{export_id}/"),
        sse: None,
        kms_key_id: None,
        storage_class: None,
        format,
        file_format: request.format.encoding(),
        parquet_compression,
        manifest: false,
        encrypted: false,
        // One file: no rotation by size or time.
        multiple_file: false,
        retention_bytes: None,
        retention_time: None,
        notification_emails: vec![],
        download: Some(DownloadOptions {
            execution_id: query_id,
            include_header: request.include_header,
            max_rows: settings.max_rows,
            chunk_rows: settings.chunk_size,
        }),
    };
    let spec = JobSpec {
        query: query.query,
        from_ms: query.from_ms,
        // A download ends: without `to`, the rows there are when the export is asked for.
        to_ms: Some(query.to_ms.unwrap_or(now)),
        // One row past the most allowed, so that a larger result is seen (and fails) without
        // reading all of it.
        limit: Some(settings.max_rows.saturating_add(1)),
        destination,
    };
    let job = Job {
        id: export_id,
        domain,
        owner: caller.owner,
        friendly_name: format!("download_{now}_{}", &export_id.simple().to_string()[..8]),
        status: JobStatus::Created,
        spec,
        sealed_secrets: None,
        created_at_ms: now,
        updated_at_ms: now,
        started_at_ms: None,
        finished_at_ms: None,
        progress: Progress::default(),
        parts: vec![],
        errors: vec![],
        manifest_url: None,
    };
    state.store.insert(&job).await?;
    state.job_runnable.notify_one();
    tracing::info!(export = %export_id, query = %query_id, format = request.format.name(), "export queued");
    let body = json!({"exportId": export_id, "executionId": query_id, "status": "PENDING",
                      "format": request.format.name()});
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// Refuses a new export while the files take `export.disk_quota_mb` or more.
async fn refuse_over_quota(state: &AppState) -> Result<(), ApiError> {
    let quota_mb = state.config.export.disk_quota_mb;
    if quota_mb == 0 {
        return Ok(());
    }
    let used = used_bytes(&state.config.export.dir(&state.config.data_dir)).await.map_err(|e| {
        tracing::error!(error = %e, "cannot measure the export directory");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 500, "cannot measure the export directory")
    })?;
    if used < quota_mb * 1_000_000 {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        codes::OVER_QUOTA,
        format!(
            "the export files take {:.1} MB, the most this server keeps (export.disk_quota_mb = {quota_mb}): \
             download and DELETE finished exports, or wait for unfetched ones to expire (export.ttl)",
            used as f64 / 1e6
        ),
    ))
}

/// The export `{id}` of the path, in the caller's (tenant's) domain, unless it was deleted or
/// expired: what every call on one export starts with.
pub struct Found(Job);

impl FromRequestParts<AppState> for Found {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let domain = tenant_domain(&caller, &parts.headers)?;
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(codes::BAD_ID, e.body_text()))?;
        let uuid = parse_id("an export id (exportId)", &id)?;
        match state.store.get(Some(&domain), uuid).await? {
            Some(job)
                if job.spec.destination.kind == DestinationType::Download
                    && job.status != JobStatus::Removed =>
            {
                Ok(Found(job))
            }
            _ => Err(ApiError::not_found(&format!(
                "export {uuid} (deleted, expired after export.ttl, or never made)"
            ))),
        }
    }
}

fn iso(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

/// The file's name for the caller: `export_<id>.<ext>` (made of the id only: nothing the
/// caller sent can reach the header).
fn file_name(job: &Job) -> String {
    let dest = &job.spec.destination;
    format!("export_{}.{}", job.id, part_extension(dest.file_format, dest.format))
}

/// `GET /v1/queries/exports/{id}/progress`. `totalRows` is known once the export completed
/// (the result is not counted ahead: that would run the query twice); until then
/// `rowsProcessed` grows in steps of `export.chunk_size`.
#[utoipa::path(
    get, path = "/v1/queries/exports/{id}/progress", tag = "exports", params(("id" = String, Path, description = "the exportId (a UUID)"), ("X-Tenant-ID" = Option<String>, Header, description = "narrows the domain: `acme` or `acme/<tenant>` for a caller of `acme`")),
    responses(
        (status = 200, description = "`status` (PENDING, IN_PROGRESS, COMPLETED, FAILED), `startedAt`, `totalRows`, \
            `rowsProcessed`, `percentComplete`, `fileName`, `fileSize`, `error`", body = serde_json::Value),
        (status = 404, description = "no such export in the caller's domain (or it expired)", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn progress(Found(job): Found) -> Json<Value> {
    let file = job.parts.first();
    let (status, error) = match job.status {
        JobStatus::Created => ("PENDING", None),
        JobStatus::Running => ("IN_PROGRESS", None),
        JobStatus::Completed => ("COMPLETED", None),
        JobStatus::Failed | JobStatus::Removed => ("FAILED", job.errors.last().cloned()),
        JobStatus::Stopped => ("FAILED", Some("stopped by an operator; export the query again".to_string())),
    };
    let completed = job.status == JobStatus::Completed;
    let total = completed.then(|| file.map_or(0, |f| f.rows));
    let processed = total.unwrap_or(job.progress.events_generated);
    let execution_id = job.spec.destination.download.as_ref().map(|d| d.execution_id);
    Json(json!({
        "exportId": job.id,
        "executionId": execution_id,
        "status": status,
        "format": ExportFormat::from_encoding(job.spec.destination.file_format).name(),
        "createdAt": iso(Some(job.created_at_ms)),
        "startedAt": iso(job.started_at_ms),
        "completedAt": iso(completed.then_some(job.finished_at_ms).flatten()),
        "totalRows": total,
        "rowsProcessed": processed,
        "percentComplete": if completed { 100 } else { 0 },
        "fileName": completed.then(|| file_name(&job)),
        "fileSize": file.map(|f| f.bytes),
        "error": error,
    }))
}

/// `GET /v1/queries/exports/{id}/download`: the file, whole or by ranges (`Range`, 206, 416).
#[utoipa::path(
    get, path = "/v1/queries/exports/{id}/download", tag = "exports",
    params(("id" = String, Path, description = "the exportId (a UUID)"), ("X-Tenant-ID" = Option<String>, Header, description = "narrows the domain: `acme` or `acme/<tenant>` for a caller of `acme`"), ("Range" = Option<String>, Header, description = "bytes=<from>-[<to>]: part of the file (a broken download resumes)")),
    responses(
        (status = 200, description = "the file, with `Content-Disposition: attachment; filename=…`, `Content-Length`, `Accept-Ranges: bytes`",
            content_type = "application/octet-stream"),
        (status = 206, description = "the range asked for", content_type = "application/octet-stream"),
        (status = 404, description = "no such export in the caller's domain, or its file was removed", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "the export has not completed (330); the message says its status", body = crate::api::openapi::ErrorBody),
        (status = 416, description = "a range past the end of the file (`Content-Range: bytes */<size>`); a `Range` that is malformed, asks for several ranges, or whose `If-Range` names another version of the file is ignored (200, the whole file)"),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn download(
    State(state): State<AppState>,
    Found(job): Found,
    request: Request,
) -> Result<Response, ApiError> {
    if job.status != JobStatus::Completed {
        let why = match job.errors.last() {
            Some(e) if job.status == JobStatus::Failed => format!("it failed: {e}"),
            _ => format!(
                "it is {}; poll its progress until COMPLETED",
                if job.status == JobStatus::Created { "PENDING" } else { "not finished" }
            ),
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::NOT_READY,
            format!("export {} has no file yet: {why}", job.id),
        ));
    }
    let Some(part) = job.parts.first() else {
        // Every export completed since a result with no rows has a file too; one before had none.
        return Err(ApiError::not_found(&format!("a file of export {} (its result has no rows)", job.id)));
    };
    let path = state.config.export.dir(&state.config.data_dir).join(&part.key);
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Err(ApiError::not_found(&format!("the file of export {} (removed)", job.id)));
    }
    let dest = &job.spec.destination;
    let content_type = crate::job::part_content_type(dest.file_format, dest.format);
    let mut request = request;
    let modified = tokio::fs::metadata(&path).await.ok().and_then(|m| m.modified().ok());
    super::exports_range::drop_unusable_range(request.headers_mut(), modified);
    let served = tower_http::services::ServeFile::new(&path).try_call(request).await.map_err(|e| {
        tracing::error!(export = %job.id, error = %e, "cannot read an export's file");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 500, "cannot read the export's file")
    })?;
    let mut response = served.map(Body::new);
    if response.status().is_success() {
        // The part's own type (the one stored with it), not one guessed from the extension.
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let disposition = format!("attachment; filename=\"{}\"", file_name(&job));
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("a plain name"));
    Ok(response)
}

/// `DELETE /v1/queries/exports/{id}`: the export ends (a running one is stopped by its worker)
/// and its file is removed.
#[utoipa::path(
    delete, path = "/v1/queries/exports/{id}", tag = "exports", params(("id" = String, Path, description = "the exportId (a UUID)"), ("X-Tenant-ID" = Option<String>, Header, description = "narrows the domain: `acme` or `acme/<tenant>` for a caller of `acme`")),
    responses(
        (status = 200, description = "ended (a running export stops) and its file removed", body = serde_json::Value),
        (status = 404, description = "no such export in the caller's domain", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn delete(State(state): State<AppState>, Found(job): Found) -> Result<Json<Value>, ApiError> {
    match state.store.command(Some(&job.domain), job.id, crate::job::Command::Remove).await? {
        Some(Outcome::Applied(_)) | None => {}
        Some(Outcome::Refused(why)) => {
            return Err(ApiError::conflict(format!("cannot delete export {}: {why}", job.id)));
        }
    }
    // A running export's worker removes its unfinished file itself; the sweep takes whatever
    // is left of it after.
    if let Err(e) = remove_export_dir(&state.config.export.dir(&state.config.data_dir), job.id).await {
        tracing::warn!(export = %job.id, error = %e, "could not remove an export's directory; the sweep will");
    }
    tracing::info!(export = %job.id, "export deleted");
    Ok(Json(json!({"exportId": job.id, "status": "DELETED"})))
}
