//! `GET /openapi.json`: the OpenAPI 3.1 document of every path the router serves.
//!
//! Each handler carries its own `#[utoipa::path]` beside its code, and [`super::router`]
//! registers handlers through `utoipa_axum`'s `OpenApiRouter`, so a path is documented
//! exactly when it is served: the document cannot list a route that does not exist or miss
//! one that does (`tests/it/openapi.rs` also calls every documented operation).

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error of the Devo paths and of `/v1/stream`, `/v1/queries`: Devo's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to change.
    #[schema(example = "query: the query is too deeply nested (at most 100 levels)")]
    pub msg: String,
    /// Devo's error code (HTTP-like for errors that are not the request's: 401, 404, 503).
    #[schema(example = 101)]
    pub status: u16,
}

/// The names of the security schemes, as operations' `security(...)` refer to them.
pub const BEARER: &str = "bearer";
pub const API_KEY: &str = "devo_apikey";
pub const TIMESTAMP: &str = "devo_timestamp";
pub const SIGNATURE: &str = "devo_sign";
pub const BASIC: &str = "basic";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Forwarder",
        description = "Runs queries and delivers their results: Devo Query API v2 jobs to S3, GCS, \
                       Azure or a directory (`/search/…`), streamed downloads (`/v1/stream`), \
                       ksqlDB's `/query`, async exports with download (`/v1/queries`) and the \
                       one-call export (`/v1/data/export-temp`). Errors are JSON \
                       `{\"msg\", \"status\"}` unless an operation says otherwise."
    ),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("devo_apikey" = [], "devo_timestamp" = [], "devo_sign" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "jobs", description = "Devo Query API v2: queued jobs that write part files to a destination"),
        (name = "stream", description = "A query's whole result streamed in the response (after ClickHouse's HTTP interface)"),
        (name = "ksql", description = "ksqlDB's REST `/query`: pull and push queries streamed as a JSON array"),
        (name = "exports", description = "Async exports: register a query, export it in the background, poll, download"),
        (name = "export-temp", description = "One call: a query's result written as Parquet or JSON Lines files to a store"),
        (name = "operations", description = "Health, readiness, metrics and this document")
    )
)]
pub struct ApiDoc;

/// The ways a caller authenticates (`src/api/auth.rs`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let header = |name: &str, description: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, description)))
        };
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "a token the operator issued (`forwarder auth create-token --domain …`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(API_KEY, header("x-logtrust-apikey", "Devo's API key"));
        components.add_security_scheme(
            TIMESTAMP,
            header("x-logtrust-timestamp", "the request's time in epoch milliseconds"),
        );
        components.add_security_scheme(
            SIGNATURE,
            header("x-logtrust-sign", "hex HMAC-SHA256 of apikey + body + timestamp with the key's secret"),
        );
        components.add_security_scheme(
            BASIC,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "ksqlDB's paths only: an API key and its secret as user and password, or \
                         any user with a token as the password",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`: this document, as it was built with the router (no credential
/// needed: it holds no secret and callers need it before they have one).
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document of every path", content_type = "application/json"))
)]
pub async fn document(
    axum::Extension(doc): axum::Extension<std::sync::Arc<String>>,
) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned())
}
