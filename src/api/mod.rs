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
mod exports_request;
mod idle;
mod ksql;
mod ksql_body;
mod ksql_request;
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
use axum::routing::{delete, get, post};

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
    let jobs = Router::new()
        .route("/search/query", post(devo::submit))
        .route("/search/job/{id}", get(devo::job))
        .route("/search/jobs", get(devo::jobs))
        .route("/search/jobs/{type}", get(devo::jobs_by_path))
        .route("/search/jobs/{type}/{name}", get(devo::jobs_by_path))
        .route("/search/job/stop/{id}", get(devo::stop))
        .route("/search/job/start/{id}", get(devo::start))
        .route("/search/job/remove/{id}", get(devo::remove))
        .route("/v1/stream", post(stream::start))
        .route("/v1/stream/{query_id}", delete(stream::cancel))
        .route("/query", post(ksql::query))
        .route("/close-query", post(ksql::close_query))
        .route("/v1/queries", post(exports::register))
        .route("/v1/queries/{id}/export/async", post(exports::start))
        .route("/v1/queries/exports/{id}/progress", get(exports::progress))
        .route("/v1/queries/exports/{id}/download", get(exports::download))
        .route("/v1/queries/exports/{id}", delete(exports::delete))
        .route("/v1/data/export-temp", post(export_temp::export))
        // Figures for the whole service: any credential reads them (Prometheus sends a
        // bearer token), nobody without one.
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .merge(jobs)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(error::no_such_path)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let counts = state.store.count_by_status().await?;
    let body = state.metrics.render(&counts);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body))
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "job store unreachable"),
    }
}
