//! Streaming download, after ClickHouse's HTTP interface: `POST /v1/stream` answers with a
//! query's whole result, uncapped, in the format the query names, compressed as the client
//! accepts; `DELETE /v1/stream/{query_id}` stops a running one. Same authentication,
//! tenancy and SQL sandbox as `/search/query` (one SELECT over the catalog, DDL, DML and
//! statements refused, the per-query memory budget).
//!
//! Whatever can be known before the first byte is answered with an error status: a bad
//! body, format or `query_id`, a query that does not plan, one that fails on its first
//! batch. A failure after that ends the body with ClickHouse's tagged exception frame.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, http};
use datafusion::error::DataFusionError;
use futures::StreamExt;
use serde_json::json;
use tokio_util::task::AbortOnDropHandle;

use super::idle::{Activity, busy_until};
use super::stream_body::{self, StreamPlan};
use super::stream_registry::Refusal;
use super::stream_request::{StreamFormat, check_query_id, negotiate, query_text, split_format};
use super::{ApiError, AppState, Caller, exception_frame};
use crate::query::{QueryError, QueryWindow};

/// The header that echoes the stream's `query_id` (ClickHouse's own name is sent too).
pub const QUERY_ID_HEADER: &str = "X-Forwarder-Query-Id";

/// The URL parameters `POST /v1/stream` takes.
const PARAMETERS: [&str; 2] = ["query_id", "default_format"];

/// Streams run their queries on a runtime of their own, as jobs do: queries are CPU work,
/// and on the API's threads a few heavy ones would leave none to answer `/healthz` (or the
/// `DELETE` that would stop them).
pub(super) fn query_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("forwarder-stream")
                .thread_stack_size(crate::query::QUERY_THREAD_STACK)
                .enable_all()
                .build()
                .expect("a tokio runtime for streamed queries")
        })
        .handle()
}

/// `POST /v1/stream?query_id=…&default_format=…` with the SQL (or `{"query": …}`) as body.
#[utoipa::path(
    post, path = "/v1/stream", tag = "stream",
    params(("query_id" = Option<String>, Query, description = "the caller's id for the query, echoed in `X-Forwarder-Query-Id`; cancels it with `DELETE /v1/stream/{query_id}`"),
        ("default_format" = Option<String>, Query, description = "the format when the SQL names none: CSVWithNames, TabSeparatedWithNames (default), JSONEachRow or Parquet")),
    request_body(content = String, content_type = "text/plain",
        description = "the SQL, optionally ending in `FORMAT <name>`; or JSON `{\"query\": \"…\"}`",
        example = "SELECT * FROM demo.ecommerce.data FORMAT CSVWithNames"),
    responses(
        (status = 200, description = "the whole result, streamed; gzip or zstd on `Accept-Encoding`. A failure after the first byte \
            ends the body with ClickHouse's exception frame, tagged with the `X-ClickHouse-Exception-Tag` header's value",
            content_type = "application/octet-stream",
            headers(("X-Forwarder-Query-Id" = String, description = "the query's id"),
                    ("X-ClickHouse-Exception-Tag" = String, description = "16 random lowercase letters and digits: the tag of a mid-stream error frame"))),
        (status = 400, description = "a query or parameter to fix", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "the caller already runs a query with that `query_id`", body = crate::api::openapi::ErrorBody),
        (status = 429, description = "the domain already runs its most streams on this server", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    activity: Option<Extension<Activity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let bad = |msg: String| ApiError::bad_request(400, msg);
    let mut query_id = None;
    let mut default_format = None;
    for (name, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "query_id" => query_id = Some(value.into_owned()),
            "default_format" => default_format = Some(value.into_owned()),
            other => {
                let shown: String = other.escape_debug().take(64).collect();
                return Err(bad(format!(
                    "unknown URL parameter \"{shown}\": /v1/stream takes {}",
                    PARAMETERS.join(" and ")
                )));
            }
        }
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let (query, named) = split_format(&query_text(&body, json_body).map_err(bad)?);
    let format = match named.or(default_format) {
        Some(name) => StreamFormat::parse(&name).map_err(bad)?,
        None => StreamFormat::TabSeparatedWithNames,
    };
    let query_id = match query_id {
        Some(id) => {
            check_query_id(&id).map_err(bad)?;
            id
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    // Parquet compresses inside (zstd): an outer compression would gain nothing.
    let compression = match format {
        StreamFormat::Parquet => None,
        _ => negotiate(headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok())),
    };
    let registered = state.streams.register(&caller.domain, &query_id).map_err(|refusal| match refusal {
        Refusal::IdTaken => ApiError::conflict(format!(
            "a stream with query_id {query_id} is already running: wait for it to end, stop it with DELETE \
             /v1/stream/{query_id}, or choose another query_id"
        )),
        Refusal::DomainBusy(most) => ApiError::too_many(
            429,
            format!(
                "this domain already runs {most} streams on this server (server.max_streams_per_domain): wait \
                 for one to end or stop one with DELETE /v1/stream/{{query_id}}"
            ),
            1,
        ),
    })?;
    tracing::info!(query_id, domain = caller.domain, format = format.name(), "stream started");

    // Planned and first batch pulled on the query runtime; given up (and the query dropped)
    // if the client goes away or the stream is cancelled meanwhile.
    let engine = state.engine.clone();
    let cancel = registered.cancel.clone();
    let opened = AbortOnDropHandle::new(query_runtime().spawn(async move {
        let run = engine.run(&query, QueryWindow::default(), 0, None).await?;
        let mut stream = run.stream;
        let first = tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            first = stream.next() => first,
        };
        Ok::<_, QueryError>(Some((stream, first)))
    }));
    // However long the first row takes (an aggregation, a sort), the connection is busy.
    let activity = activity.map(|Extension(a)| a);
    let (stream, first) = match busy_until(activity.as_ref(), opened).await {
        Err(e) => {
            tracing::error!(query_id, error = %e, "the stream's query task failed");
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 500, "the query could not run"));
        }
        Ok(Err(e)) => return Err(refused(e)),
        Ok(Ok(None)) => {
            return Err(ApiError::conflict(format!(
                "the stream {query_id} was cancelled (DELETE /v1/stream/{query_id}) before its first row"
            )));
        }
        Ok(Ok(Some(opened))) => opened,
    };
    let first = match first {
        Some(Err(e)) => return Err(failed_at_once(&e)),
        Some(Ok(batch)) => Some(batch),
        None => None,
    };
    let tag = exception_frame::new_tag();
    let mut response = Response::new(stream_body::start(
        query_runtime(),
        StreamPlan { format, compression, tag: tag.clone(), query_id: query_id.clone() },
        stream.schema(),
        first,
        stream,
        registered,
        activity,
    ));
    let headers = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).expect("ids, tags and names are plain ASCII");
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    headers.insert(QUERY_ID_HEADER, value(&query_id));
    headers.insert("X-ClickHouse-Query-Id", value(&query_id));
    headers.insert("X-ClickHouse-Format", HeaderValue::from_static(format.name()));
    headers.insert(exception_frame::TAG_HEADER, value(&tag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = compression {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.name()));
    }
    Ok(response)
}

/// `DELETE /v1/stream/{query_id}`: stops the caller's running stream of that id at once (its
/// body ends with the exception frame).
#[utoipa::path(
    delete, path = "/v1/stream/{query_id}", tag = "stream",
    params(("query_id" = String, Path, description = "the id given as `?query_id=` or echoed in `X-Forwarder-Query-Id`")),
    responses(
        (status = 200, description = "stopped; its body ends with the exception frame", body = serde_json::Value),
        (status = 404, description = "the caller runs no query of that id", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody)
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(query_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_query_id(&query_id).map_err(|msg| ApiError::bad_request(400, msg))?;
    if !state.streams.cancel(&caller.domain, &query_id) {
        return Err(ApiError::not_found(&format!("no running stream with query_id {query_id}")));
    }
    tracing::info!(query_id, domain = caller.domain, "stream cancelled");
    Ok((http::StatusCode::OK, Json(json!({"query_id": query_id, "cancelled": true}))))
}

/// A query refused before it ran: the caller's to fix, unless the server failed to open it.
fn refused(e: QueryError) -> ApiError {
    match e {
        QueryError::Execution(msg) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 500, format!("query failed: {msg}"))
        }
        other => ApiError::bad_request(400, other.to_string()),
    }
}

/// A query that failed on its first batch, before any byte was sent: an error status. Its own
/// arithmetic, casts and memory are the caller's to fix; reading a table is the server's.
fn failed_at_once(e: &DataFusionError) -> ApiError {
    let message = stream_body::failure_text(e);
    match e.find_root() {
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 500, message)
        }
        _ => ApiError::bad_request(400, message),
    }
}
