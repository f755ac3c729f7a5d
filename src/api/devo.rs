//! Devo Query API v2 handlers.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiError, AppState, Caller};
use crate::job::{Command, DestinationType, Job, JobStatus, Progress, job_view, now_ms, parse_submit};
use crate::store::{JobFilter, Outcome};
use crate::upload::endpoint::check_endpoint;

/// `POST /search/query`: validates the request, queues the job, answers with its id.
#[utoipa::path(
    post, path = "/search/query", tag = "jobs",
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "Devo's query request: `query`, `from`, `to` (epoch seconds or ms, or ISO-8601; no `to`: a continuous job), \
                       `mode.type`, `destination` {`type`: s3 | gcs | azure | file, `params`}, `notify` (see the README's table of params)",
        example = json!({"query": "SELECT * FROM demo.ecommerce.data WHERE statusCode >= 500", "from": 1767225600, "to": 1767312000,
                          "mode": {"type": "csv"},
                          "destination": {"type": "s3", "params": {"aws.bucket": "my-bucket", "aws.region": "eu-west-1",
                                          "aws.accesskey": "AKIA…", "aws.secretkey": "…", "format": "gzip"}}})),
    responses(
        (status = 200, description = "queued: `{\"status\": 0, \"timestamp\", \"object\": {\"id\": \"<job id>\"}}`", body = serde_json::Value),
        (status = 400, description = "a param to fix (Devo's code: 101 query, 2xx destination params)", body = crate::api::openapi::ErrorBody),
        (status = 413, description = "the body is over 1 MiB", body = crate::api::openapi::ErrorBody),
        (status = 429, description = "the domain's queued jobs are at `worker.max_queued_per_domain`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "the job store does not answer", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (spec, secrets) = parse_submit(&body, &state.config.limits)?;
    let kind = spec.destination.kind;
    if let Some(endpoint) = &spec.destination.endpoint {
        let (param, code) = match kind {
            DestinationType::Azure => ("azure.endpoint", crate::job::request_codes::BAD_STORE_PARAM),
            DestinationType::Gcs => ("gcs.endpoint", crate::job::request_codes::BAD_STORE_PARAM),
            _ => ("aws.endpoint", crate::job::request_codes::BAD_AWS_PARAM),
        };
        check_endpoint(endpoint, &state.config.s3.allowed())
            .await
            .map_err(|msg| ApiError::bad_request(code, msg.replace("aws.endpoint", param)))?;
    }
    if kind == DestinationType::File && state.config.destinations.file.root.is_none() {
        return Err(ApiError::bad_request(
            crate::job::request_codes::FILE_NOT_CONFIGURED,
            "this server writes no files: destination type \"file\" needs the operator to set \
             [destinations.file] root in the configuration; use another destination type",
        ));
    }
    let shape = state
        .engine
        .check(&spec.query)
        .await
        .map_err(|e| ApiError::bad_request(crate::job::request_codes::BAD_QUERY, e.to_string()))?;
    if spec.to_ms.is_none() && !shape.windowed {
        // A continuous job moves on by the time column; without one it would send the same
        // rows again every window, forever.
        let tables = match shape.windowed_tables.as_slice() {
            [] => "this catalog has none".to_string(),
            names => format!("the catalog's are {}", names.join(", ")),
        };
        return Err(ApiError::bad_request(
            crate::job::request_codes::BAD_QUERY,
            format!(
                "a job without `to` is continuous: it exports new rows as they arrive, by the time column of \
                 the tables it reads, and this query reads no table with a time column ({tables}). \
                 Give `to`, or query a table with a time column"
            ),
        ));
    }
    if kind == DestinationType::S3 && spec.destination.bucket.is_none() && state.config.s3.bucket.is_none() {
        return Err(ApiError::bad_request(
            crate::job::request_codes::BUCKET_NEEDS_CREDENTIALS,
            "destination.params needs aws.bucket (with aws.region, aws.accesskey and aws.secretkey): \
             this server has no default bucket (s3.bucket in its configuration)",
        ));
    }
    refuse_past_the_queue_cap(&state, &caller.domain).await?;
    let sealed = if secrets.is_empty() {
        None
    } else {
        Some(state.secrets.seal(&secrets).map_err(|e| {
            tracing::error!(error = %e, "could not seal secrets");
            ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, 500, "could not store the request")
        })?)
    };
    let id = Uuid::new_v4();
    let now = now_ms();
    let job = Job {
        id,
        domain: caller.domain,
        owner: caller.owner,
        friendly_name: format!("{}_{now}_{}", spec.destination.kind.name(), &id.simple().to_string()[..8]),
        status: JobStatus::Created,
        spec,
        sealed_secrets: sealed,
        created_at_ms: now,
        updated_at_ms: now,
        started_at_ms: None,
        finished_at_ms: None,
        progress: Progress::default(),
        manifest_url: None,
        parts: vec![],
        errors: vec![],
    };
    state.store.insert(&job).await?;
    state.job_runnable.notify_one();
    tracing::info!(job = %id, domain = %job.domain, "job queued");
    Ok(Json(json!({"msg": "", "status": 0, "object": {"id": id.to_string()}})))
}

/// When a domain's queue is full, a client should come back after about this many seconds
/// (jobs take seconds to minutes; polling faster only adds load).
const QUEUE_FULL_RETRY_AFTER_SECS: u64 = 30;

/// One domain cannot bury the store (and every other domain's turn) under queued jobs.
/// Counted before the insert, so that concurrent submissions may pass the cap by as many
/// as arrive at once; the cap bounds a flood, not an exact number.
async fn refuse_past_the_queue_cap(state: &AppState, domain: &str) -> Result<(), ApiError> {
    let cap = state.config.worker.max_queued_per_domain;
    if cap == 0 {
        return Ok(());
    }
    let queued = state.store.queued_count(domain).await?;
    if queued < cap {
        return Ok(());
    }
    tracing::warn!(domain, queued, cap, "submission refused: the domain's queue is full");
    Err(ApiError::too_many(
        429,
        format!(
            "domain {domain} has {queued} jobs queued, the most allowed (worker.max_queued_per_domain); \
             wait for some to finish or remove some"
        ),
        QUEUE_FULL_RETRY_AFTER_SECS,
    ))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(&format!("job {id}")))
}

/// `GET /search/job/{id}`.
#[utoipa::path(
    get, path = "/search/job/{id}", tag = "jobs", params(("id" = String, Path, description = "the job id (a UUID)")),
    responses(
        (status = 200, description = "the job: status, progress, parts (`files`), errors; never its credentials", body = serde_json::Value),
        (status = 404, description = "no such job in the caller's domain", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "the job store does not answer", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let uuid = parse_id(&id)?;
    let job = state
        .store
        .get(Some(&caller.domain), uuid)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    Ok(Json(json!({"status": 0, "timestamp": now_ms(), "object": job_view(&job)})))
}

/// `GET /search/jobs?status=RUNNING&type=s3&name=prefix&limit=N` (newest first, 1000 by default).
#[utoipa::path(
    get, path = "/search/jobs", tag = "jobs",
    params(("status" = Option<String>, Query, description = "CREATED, RUNNING, STOPPED, COMPLETED, FAILED or REMOVED"),
        ("name" = Option<String>, Query, description = "jobs whose name starts with this"),
        ("limit" = Option<u32>, Query, description = "at most this many (1 to 10000, default 1000)"),
        ("type" = Option<String>, Query, description = "destination type: `s3` (what Devo's SDK sends), `file`, `azure`, `gcs` or `download` (async exports)")),
    responses(
        (status = 200, description = "the caller's jobs, newest first", body = serde_json::Value),
        (status = 400, description = "a bad `status` or `limit`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "the job store does not answer", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn jobs(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.get("status") {
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                400,
                format!("status must be one of {}", JobStatus::ALL.map(|s| s.as_str()).join(", ")),
            )
        })?),
        None => None,
    };
    // A type Devo has and this server does not (`kafka`, …) holds no job: an empty list.
    let destination = match q.get("type") {
        None => None,
        Some(t) => match DestinationType::of_job(t) {
            Some(d) => Some(d),
            None => return Ok(Json(json!({"status": 0, "timestamp": now_ms(), "object": []}))),
        },
    };
    let filter = JobFilter {
        domain: Some(caller.domain),
        status,
        name_prefix: q.get("name").cloned(),
        destination,
        limit: match q.get("limit") {
            None => None,
            Some(l) => Some(l.parse::<u32>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
                ApiError::bad_request(
                    400,
                    "limit must be a whole number of jobs from 1 to 10000 (default 1000)",
                )
            })?),
        },
    };
    let jobs = state.store.list(&filter).await?;
    let views: Vec<_> = jobs.iter().map(job_view).collect();
    Ok(Json(json!({"status": 0, "timestamp": now_ms(), "object": views})))
}

/// `GET /search/jobs/{type}`: the same list as `/search/jobs`, filtered by a path segment as
/// Devo's SDK before 7.0 asks for it (`get_jobs(job_type)` in devo-sdk 5.x).
#[utoipa::path(
    get, path = "/search/jobs/{type}", tag = "jobs",
    params(("type" = String, Path, description = "destination type: `s3`, `file`, `azure`, `gcs` or `download` (async exports)"),
        ("status" = Option<String>, Query, description = "as for `/search/jobs`"),
        ("name" = Option<String>, Query, description = "as for `/search/jobs`"),
        ("limit" = Option<u32>, Query, description = "as for `/search/jobs`")),
    responses(
        (status = 200, description = "the caller's jobs of that type, newest first", body = serde_json::Value),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn jobs_of_type(
    State(state): State<AppState>,
    caller: Caller,
    Path(job_type): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    q.insert("type".into(), job_type);
    jobs(State(state), caller, Query(q)).await
}

/// `GET /search/jobs/{type}/{name}`: `get_jobs(job_type, name)` in devo-sdk 5.x.
#[utoipa::path(
    get, path = "/search/jobs/{type}/{name}", tag = "jobs",
    params(("type" = String, Path, description = "destination type: `s3`, `file`, `azure`, `gcs` or `download` (async exports)"),
        ("name" = String, Path, description = "jobs whose name starts with this"),
        ("status" = Option<String>, Query, description = "as for `/search/jobs`"),
        ("limit" = Option<u32>, Query, description = "as for `/search/jobs`")),
    responses(
        (status = 200, description = "the caller's jobs of that type and name, newest first", body = serde_json::Value),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn jobs_of_type_and_name(
    State(state): State<AppState>,
    caller: Caller,
    Path((job_type, name)): Path<(String, String)>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    q.insert("type".into(), job_type);
    q.insert("name".into(), name);
    jobs(State(state), caller, Query(q)).await
}

async fn steer(
    state: &AppState,
    caller: &Caller,
    id: &str,
    command: Command,
) -> Result<Json<Value>, ApiError> {
    let uuid = parse_id(id)?;
    let outcome = state
        .store
        .command(Some(&caller.domain), uuid, command)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    match outcome {
        Outcome::Applied(status) => {
            tracing::info!(job = %uuid, command = command.as_str(), %status, "operator command");
            if command == Command::Start {
                state.job_runnable.notify_one();
            }
            // A job stopped while it waited has ended here, with no worker to tell anyone.
            if status == JobStatus::Stopped {
                let _span = tracing::info_span!("stopped_while_queued", job = %uuid).entered();
                state.reporter.job_ended_in_background(uuid, JobStatus::Stopped, Duration::ZERO);
            }
        }
        Outcome::Refused(why) => {
            return Err(ApiError::conflict(format!(
                "cannot {} job {id}: {why}",
                command.as_str().to_lowercase()
            )));
        }
    }
    let job = state
        .store
        .get(Some(&caller.domain), uuid)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("job {id}")))?;
    Ok(Json(json!({"status": 0, "timestamp": now_ms(), "object": job_view(&job)})))
}

/// `GET /search/job/stop/{id}`: the open part is closed and uploaded, the job ends `STOPPED`.
#[utoipa::path(
    get, path = "/search/job/stop/{id}", tag = "jobs", params(("id" = String, Path, description = "the job id (a UUID)")),
    responses(
        (status = 200, description = "the open part is closed and uploaded; the job ends `STOPPED`", body = serde_json::Value),
        (status = 404, description = "no such job in the caller's domain", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "the job's status does not allow it (e.g. stopping a completed job)", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "the job store does not answer", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    steer(&state, &caller, &id, Command::Stop).await
}

/// `GET /search/job/start/{id}`: a stopped job continues where it stopped.
#[utoipa::path(
    get, path = "/search/job/start/{id}", tag = "jobs", params(("id" = String, Path, description = "the job id (a UUID)")),
    responses(
        (status = 200, description = "a stopped job continues where it stopped", body = serde_json::Value),
        (status = 404, description = "no such job in the caller's domain", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "the job's status does not allow it (e.g. stopping a completed job)", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "the job store does not answer", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    steer(&state, &caller, &id, Command::Start).await
}

/// `GET /search/job/remove/{id}`: in-flight uploads are aborted, credentials forgotten.
#[utoipa::path(
    get, path = "/search/job/remove/{id}", tag = "jobs", params(("id" = String, Path, description = "the job id (a UUID)")),
    responses(
        (status = 200, description = "in-flight uploads are aborted, credentials deleted; status `REMOVED`", body = serde_json::Value),
        (status = 404, description = "no such job in the caller's domain", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "the job's status does not allow it (e.g. stopping a completed job)", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "the job store does not answer", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    steer(&state, &caller, &id, Command::Remove).await
}
