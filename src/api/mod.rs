//! The HTTP API: Devo's Query API v2 paths ([`devo`]), health and readiness.

mod auth;
mod devo;
mod error;

pub use auth::Caller;
pub use error::ApiError;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::config::Config;
use crate::query::QueryEngine;
use crate::secret::SecretBox;
use crate::store::JobStore;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn JobStore>,
    pub engine: Arc<dyn QueryEngine>,
    pub secrets: SecretBox,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/search/query", post(devo::submit))
        .route("/search/job/{id}", get(devo::job))
        .route("/search/jobs", get(devo::jobs))
        .route("/search/job/stop/{id}", get(devo::stop))
        .route("/search/job/remove/{id}", get(devo::remove))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "job store unreachable"),
    }
}
