//! Errors as Devo clients expect them: `{"msg": "...", "status": <code>}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::job::RequestError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub http: StatusCode,
    pub code: u16,
    pub msg: String,
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        Self { http: StatusCode::NOT_FOUND, code: 404, msg: format!("{what} not found") }
    }
    pub fn unauthorized(msg: &str) -> Self {
        Self { http: StatusCode::UNAUTHORIZED, code: 401, msg: msg.to_string() }
    }
    /// The request is well-formed but the job's state does not allow it.
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self { http: StatusCode::CONFLICT, code: 409, msg: msg.into() }
    }
    pub fn too_large(limit: usize) -> Self {
        Self { http: StatusCode::PAYLOAD_TOO_LARGE, code: 413, msg: format!("the request body is over {limit} bytes") }
    }
    pub fn bad_request(code: u16, msg: impl Into<String>) -> Self {
        Self { http: StatusCode::BAD_REQUEST, code, msg: msg.into() }
    }
}

/// Unknown paths, in Devo's error shape rather than an empty body.
pub async fn no_such_path(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(&format!("{} (no such path; the API is under /search/…)", uri.path()))
}

/// Known paths called with the wrong method.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let right = if uri.path() == "/search/query" { "POST" } else { "GET" };
    ApiError { http: StatusCode::METHOD_NOT_ALLOWED, code: 405, msg: format!("{} does not take {method}; use {right}", uri.path()) }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        Self::bad_request(e.code, e.msg)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "job store error");
        Self { http: StatusCode::SERVICE_UNAVAILABLE, code: 503, msg: "the job store is unavailable; try again".into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.http, Json(json!({"msg": self.msg, "status": self.code}))).into_response();
        if self.http == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read: this connection cannot carry another
            // request, and a pooling client must be told so.
            response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        response
    }
}
