//! The HTTP API: Devo's Query API v2 paths ([`devo`]), streamed results (`/v1/stream`, after
//! ClickHouse; ksqlDB's `/query`), health and readiness.

mod auth;
mod devo;
mod error;
pub mod exception_frame;
mod export_temp;
mod export_temp_request;
mod exports;
pub mod exports_files;
mod exports_range;
mod exports_request;
mod idle;
mod ksql;
mod ksql_body;
mod ksql_error;
mod ksql_request;
mod openapi;
mod serve;
mod signatures;
mod stream;
mod stream_body;
mod stream_parquet;
mod stream_registry;
mod stream_request;

pub use auth::{Caller, sign};
pub use error::ApiError;
pub use serve::{bind, serve};
pub use signatures::{MAX_SIGNATURES, SHARED_SECOND, SignatureBindings};
pub use stream::QUERY_ID_HEADER;
pub use stream_registry::StreamRegistry;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::notify::EndReporter;
use crate::query::QueryEngine;
use crate::secret::SecretBox;
use crate::store::{CredentialStore, JobStore, QueryStore};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn JobStore>,
    pub engine: Arc<dyn QueryEngine>,
    pub secrets: SecretBox,
    pub metrics: Arc<Metrics>,
    pub credentials: Arc<dyn CredentialStore>,
    /// The queries registered for async exports (`POST /v1/queries`).
    pub queries: Arc<dyn QueryStore>,
    /// Emails the recipients of a job an operator stopped before it ran.
    pub reporter: Arc<EndReporter>,
    /// Wakes this process's worker when a job becomes runnable (queued or started again).
    pub job_runnable: Arc<tokio::sync::Notify>,
    /// The method and path each live signature was first used with.
    pub signatures: Arc<SignatureBindings>,
    /// The `/v1/stream` queries running now, by domain and query_id (to cancel them).
    pub streams: Arc<StreamRegistry>,
}

pub fn router(state: AppState) -> Router {
    let (router, _) = router_and_document(state);
    router
}

/// The router and the OpenAPI document of what it serves: handlers are registered with
/// their `#[utoipa::path]`, so the two cannot disagree.
pub fn router_and_document(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let authenticated = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(devo::submit))
        .routes(routes!(devo::job))
        .routes(routes!(devo::jobs))
        .routes(routes!(devo::jobs_of_type))
        .routes(routes!(devo::jobs_of_type_and_name))
        .routes(routes!(devo::stop))
        .routes(routes!(devo::start))
        .routes(routes!(devo::remove))
        .routes(routes!(stream::start))
        .routes(routes!(stream::cancel))
        .routes(routes!(ksql::query))
        .routes(routes!(ksql::close_query))
        .routes(routes!(exports::register))
        .routes(routes!(exports::start))
        .routes(routes!(exports::progress))
        .routes(routes!(exports::download))
        .routes(routes!(exports::delete))
        .routes(routes!(export_temp::export))
        // Figures for the whole service: any credential reads them (Prometheus sends a
        // bearer token), nobody without one.
        .routes(routes!(metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate));
    let (router, mut document) = OpenApiRouter::new()
        .merge(authenticated)
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(openapi::document))
        .split_for_parts();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let served = Arc::new(document.to_json().expect("the OpenAPI document serializes"));
    let router = router
        .layer(axum::Extension(served))
        .fallback(error::no_such_path)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state);
    (router, document)
}

/// `GET /metrics`: Prometheus figures for the whole service (jobs by status, parts, bytes,
/// uploads, streams), in OpenMetrics text.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"),
        (status = 401, description = "no credential, or one the server does not know", body = crate::api::openapi::ErrorBody)
    )
)]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let counts = state.store.count_by_status().await?;
    let body = state.metrics.render(&counts, state.streams.len());
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body))
}

/// `GET /readyz`: ready to serve while the job store answers.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "`ready`", content_type = "text/plain"),
        (status = 503, description = "`job store unreachable`", content_type = "text/plain")
    )
)]
async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "job store unreachable"),
    }
}

/// `GET /healthz`: the process is up and serving.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "`ok`", content_type = "text/plain"))
)]
async fn healthz() -> &'static str {
    "ok"
}
