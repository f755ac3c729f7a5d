//! Errors as Devo clients expect them: `{"msg": "...", "status": <code>}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::job::RequestError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub http: StatusCode,
    pub code: u16,
    pub msg: String,
    /// Seconds after which the same request may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(http: StatusCode, code: u16, msg: impl Into<String>) -> Self {
        Self { http, code, msg: msg.into(), retry_after: None }
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 404, format!("{what} not found"))
    }
    pub fn unauthorized(msg: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 401, msg)
    }
    /// The request is well-formed but the job's state does not allow it.
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, 409, msg)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, 413, format!("the request body is over {limit} bytes"))
    }
    pub fn bad_request(code: u16, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }
    /// The body did not arrive in time; the rest of it is never read.
    pub fn body_too_slow(limit: std::time::Duration) -> Self {
        let limit = humantime_serde::re::humantime::format_duration(limit);
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            408,
            format!(
                "the request body did not arrive within {limit} (server.body_read_timeout); send it at once"
            ),
        )
    }
    /// Busy, not wrong: the same request may succeed after `retry_after` seconds.
    pub fn too_many(code: u16, msg: impl Into<String>, retry_after: u64) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, msg) }
    }
}

/// Unknown paths, in Devo's error shape rather than an empty body.
pub async fn no_such_path(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(&format!("{} (no such path; the API is under /search/…)", uri.path()))
}

/// Known paths called with the wrong method.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let right = match uri.path() {
        "/search/query"
        | "/v1/stream"
        | "/query"
        | "/close-query"
        | "/v1/queries"
        | "/v1/data/export-temp" => "POST",
        path if path.starts_with("/v1/stream/") => "DELETE",
        path if path.starts_with("/v1/queries/exports/") && path.matches('/').count() == 4 => "DELETE",
        path if path.starts_with("/v1/queries/") && path.ends_with("/export/async") => "POST",
        _ => "GET",
    };
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        405,
        format!("{} does not take {method}; use {right}", uri.path()),
    )
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        Self::bad_request(e.code, e.msg)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "job store error");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, 503, "the job store is unavailable; try again")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.http, Json(super::openapi::ErrorBody { msg: self.msg, status: self.code })).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if matches!(self.http, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
            // The rest of the body is never read: this connection cannot carry another
            // request, and a pooling client must be told so.
            response
                .headers_mut()
                .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        response
    }
}
