//! ksqlDB's errors, as its clients read them: `{"@type":"statement_error"|"generic_error",
//! "error_code":…,"message":…}` with ksqlDB's own codes (HTTP status × 100 + n: 40001 a
//! statement that cannot run, 40000 any other bad request), as an answer or as the
//! `errorMessage` that ends a streamed body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use serde_json::json;

use super::ApiError;
use crate::query::QueryError;

/// ksqlDB's error codes.
pub const BAD_REQUEST: u32 = 40000;
pub const BAD_STATEMENT: u32 = 40001;
pub const SERVER_ERROR: u32 = 50000;

/// An error as ksqlDB writes it.
#[derive(Debug)]
pub struct KsqlError {
    pub(super) http: StatusCode,
    pub(super) code: u32,
    pub(super) message: String,
    /// The statement, for a `statement_error`.
    pub(super) statement: Option<String>,
    pub(super) retry_after: Option<u64>,
}

impl KsqlError {
    pub(super) fn bad_body(message: impl Into<String>) -> Self {
        Self {
            http: StatusCode::BAD_REQUEST,
            code: BAD_REQUEST,
            message: message.into(),
            statement: None,
            retry_after: None,
        }
    }
    pub(super) fn statement(message: impl Into<String>, ksql: &str) -> Self {
        Self { code: BAD_STATEMENT, statement: Some(ksql.to_string()), ..Self::bad_body(message) }
    }
    pub(super) fn server(message: impl Into<String>) -> Self {
        Self { http: StatusCode::INTERNAL_SERVER_ERROR, code: SERVER_ERROR, ..Self::bad_body(message) }
    }

    /// The element that ends a body after a failure: `{"errorMessage":{…}}`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "@type": if self.statement.is_some() { "statement_error" } else { "generic_error" },
            "error_code": self.code,
            "message": self.message,
            "stackTrace": [],
        });
        if let Some(statement) = &self.statement {
            body["statementText"] = json!(statement);
            body["entities"] = json!([]);
        }
        body
    }
}

impl From<ApiError> for KsqlError {
    fn from(e: ApiError) -> Self {
        Self {
            http: e.http,
            code: u32::from(e.http.as_u16()) * 100,
            message: e.msg,
            statement: None,
            retry_after: e.retry_after,
        }
    }
}

impl IntoResponse for KsqlError {
    fn into_response(self) -> Response {
        let mut response = (self.http, Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, seconds.into());
        }
        if self.http == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"forwarder\""));
        }
        if matches!(self.http, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
            // The rest of the body is never read: the connection cannot carry another request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A refusal of the shared middleware (authentication, body size), in ksqlDB's shape.
pub fn error_response(e: ApiError) -> Response {
    KsqlError::from(e).into_response()
}

/// A query failure, by whose it is to fix: reading a table is the server's; the query's own
/// arithmetic, casts and memory are the caller's.
pub fn failure(e: &DataFusionError) -> KsqlError {
    let message = super::stream_body::failure_text(e);
    match e.find_root() {
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => KsqlError::server(message),
        _ => KsqlError::bad_body(message),
    }
}

/// A query refused before it ran.
pub fn refused(e: QueryError, ksql: &str) -> KsqlError {
    match e {
        QueryError::Execution(msg) => KsqlError::server(format!("query failed: {msg}")),
        other => KsqlError::statement(other.to_string(), ksql),
    }
}
