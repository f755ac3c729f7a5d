//! ksqlDB's REST query surface: `POST /query` answers a SELECT with a JSON array streamed
//! element by element (a header, the rows, a final message); `… EMIT CHANGES` makes it a push
//! query that keeps streaming rows as they land ([`super::ksql_body`]). `POST /close-query`
//! ends one. Same engine, SQL sandbox, per-query memory budget, query runtime and per-domain
//! cap of running queries as `/v1/stream`; errors in ksqlDB's shape
//! (`{"@type":"statement_error"|"generic_error","error_code":…,"message":…}`), whose codes
//! are ksqlDB's own (HTTP status × 100 + n: 40001 a statement that cannot run, 40000 any other
//! bad request), since its clients read them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::{Extension, Json};
use futures::StreamExt;
use serde_json::json;
use tokio_util::task::AbortOnDropHandle;

use super::idle::{Activity, busy_until};
use super::ksql_body::{self, Live, Opened, PushPlan};
pub use super::ksql_error::error_response;
use super::ksql_error::{KsqlError, failure, refused};
use super::ksql_request::{self, Refused, Start};
use super::stream::query_runtime;
use super::stream_registry::Refusal;
use super::{ApiError, AppState, Caller};
use crate::job::now_ms;
use crate::query::{CONTINUOUS_LAG, QueryError, QueryWindow};

/// ksqlDB's versioned content type, which its clients send and expect.
const KSQL_V1: &str = "application/vnd.ksql.v1+json";

/// The paths that take HTTP Basic, as ksqlDB's clients authenticate.
pub fn takes_basic_auth(path: &str) -> bool {
    matches!(path, "/query" | "/close-query")
}

/// `POST /query` with `{"ksql": "SELECT …;", "streamsProperties": {…}}`.
#[utoipa::path(
    post, path = "/query", tag = "ksql",
    security(("basic" = []), ("bearer" = []), ("devo_apikey" = [], "devo_timestamp" = [], "devo_sign" = [])),
    request_body(content = serde_json::Value, content_type = "application/vnd.ksql.v1+json",
        example = json!({"ksql": "SELECT * FROM demo.ecommerce.data EMIT CHANGES LIMIT 10;", "streamsProperties": {}})),
    responses(
        (status = 200, description = "a JSON array streamed element by element: `{\"header\": {\"queryId\", \"schema\"}}`, one \
            `{\"row\": {\"columns\": […]}}` per row, then `{\"finalMessage\"…}` or `{\"errorMessage\"…}`. `EMIT CHANGES` keeps \
            streaming rows as they land until its `LIMIT` or until the client closes", body = serde_json::Value,
            content_type = "application/vnd.ksql.v1+json"),
        (status = 400, description = "ksqlDB's error: `{\"@type\": \"statement_error\", \"error_code\": 40001, \"message\"…}`", body = serde_json::Value),
        (status = 401, description = "ksqlDB's error (40100): no credential or an unknown one", body = serde_json::Value),
        (status = 429, description = "ksqlDB's error (42900): the domain already runs its most streams on this server", body = serde_json::Value)
    )
)]
pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    activity: Option<Extension<Activity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KsqlError> {
    let content_type = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))?;
    let ksql = || {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| b["ksql"].as_str().map(String::from))
            .unwrap_or_default()
    };
    let request = ksql_request::parse(&body).map_err(|refusal| match refusal {
        Refused::Body(message) => KsqlError::bad_body(message),
        Refused::Statement(message) => KsqlError::statement(message, &ksql()),
    })?;
    let shape = state.engine.check(&request.sql).await.map_err(|e| refused(e, &ksql()))?;
    if request.push && !shape.windowed {
        let tables = match shape.windowed_tables.as_slice() {
            [] => "this catalog has none".to_string(),
            names => format!("the catalog's are {}", names.join(", ")),
        };
        return Err(KsqlError::statement(
            format!(
                "EMIT CHANGES streams new rows as they land, by the time column of the tables a query reads, and \
                 this query reads no table with a time column ({tables}): query one, or leave out EMIT CHANGES \
                 for a pull query"
            ),
            &ksql(),
        ));
    }
    let kind = if request.push { "push" } else { "pull" };
    let query_id = format!(
        "{}_{}",
        if request.push { "transient" } else { "query" },
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let registered = state.streams.register(&caller.domain, &query_id).map_err(|refusal| match refusal {
        Refusal::IdTaken => KsqlError::server("a fresh query id was taken; send the query again"),
        Refusal::DomainBusy(most) => KsqlError::from(ApiError::too_many(
            429,
            format!(
                "this domain already runs {most} streamed queries on this server (/query and /v1/stream \
                 together; server.max_streams_per_domain): wait for one to end, or end one (close its \
                 connection, or POST /close-query with its queryId)"
            ),
            1,
        )),
    })?;
    let live = Live::new(state.metrics.clone(), kind);
    tracing::info!(query_id, domain = caller.domain, kind, "ksql query started");

    // The first window (a pull query's only one) planned and its first batch pulled on the
    // query runtime, so that a query failing at once gets an error status; given up if the
    // client goes away meanwhile.
    let lag = CONTINUOUS_LAG.as_millis() as i64;
    let window = match (request.push, request.start) {
        (false, _) => QueryWindow::default(),
        (true, Start::Earliest) => QueryWindow { from_ms: None, to_ms: Some(now_ms() - lag) },
        (true, Start::Latest) => {
            let now = now_ms() - lag;
            QueryWindow { from_ms: Some(now), to_ms: Some(now) }
        }
    };
    let (engine, sql, limit) = (state.engine.clone(), request.sql.clone(), request.limit);
    let opened = AbortOnDropHandle::new(query_runtime().spawn(async move {
        let run = engine.run(&sql, window, 0, limit).await?;
        let mut stream = run.stream;
        let first = stream.next().await;
        Ok::<_, QueryError>((stream, first))
    }));
    // However long the first row takes (an aggregation, a sort), the connection is busy.
    let activity = activity.map(|Extension(a)| a);
    let (stream, first) = match busy_until(activity.as_ref(), opened).await {
        Err(e) => {
            tracing::error!(query_id, error = %e, "the ksql query task failed");
            return Err(KsqlError::server("the query could not run"));
        }
        Ok(Err(e)) => return Err(refused(e, &ksql())),
        Ok(Ok(opened)) => opened,
    };
    let first = match first {
        Some(Err(e)) => return Err(failure(&e)),
        Some(Ok(batch)) => Some(batch),
        None => None,
    };
    let push = request.push.then(|| PushPlan {
        engine: state.engine.clone(),
        sql: request.sql.clone(),
        from_ms: window.to_ms.unwrap_or_else(now_ms),
    });
    let opened = Opened { query_id: query_id.clone(), stream, first, limit: request.limit, push, activity };
    let mut response = Response::new(ksql_body::start(query_runtime(), opened, registered, live));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The content type to answer in: ksqlDB's own unless the client asks for plain JSON only.
fn negotiate(accept: Option<&str>) -> Result<&'static str, KsqlError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(KSQL_V1) };
    let types: Vec<String> =
        accept.split(',').map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).collect();
    let takes = |t: &str| types.iter().any(|x| x == t);
    if takes(KSQL_V1) || takes("application/vnd.ksql.v2+json") || takes("*/*") || takes("application/*") {
        Ok(KSQL_V1)
    } else if takes("application/json") {
        Ok("application/json")
    } else {
        Err(KsqlError {
            http: StatusCode::NOT_ACCEPTABLE,
            code: 40600,
            ..KsqlError::bad_body(format!(
                "/query answers in {KSQL_V1} or application/json: accept one of them (the Accept header was {})",
                accept.escape_debug().take(64).collect::<String>()
            ))
        })
    }
}

/// `POST /close-query` with `{"queryId": "…"}`: ends the caller's running query of that id;
/// its body ends with a final message.
#[utoipa::path(
    post, path = "/close-query", tag = "ksql",
    security(("basic" = []), ("bearer" = []), ("devo_apikey" = [], "devo_timestamp" = [], "devo_sign" = [])),
    request_body(content = serde_json::Value, content_type = "application/json", example = json!({"queryId": "…"})),
    responses(
        (status = 200, description = "ended; its body ends with a final message", body = serde_json::Value),
        (status = 400, description = "ksqlDB's error: `{\"@type\": \"statement_error\", \"error_code\": 40001, \"message\"…}`", body = serde_json::Value),
        (status = 401, description = "ksqlDB's error (40100): no credential or an unknown one", body = serde_json::Value)
    )
)]
pub async fn close_query(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<serde_json::Value>, KsqlError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        query_id: String,
    }
    let body: Body = serde_json::from_slice(&body).map_err(|e| {
        KsqlError::bad_body(format!("the body must be a JSON object {{\"queryId\": \"…\"}}: {e}"))
    })?;
    if !state.streams.cancel(&caller.domain, &body.query_id) {
        let shown: String = body.query_id.escape_debug().take(64).collect();
        return Err(KsqlError::bad_body(format!("no running query with queryId \"{shown}\"")));
    }
    tracing::info!(query_id = body.query_id, domain = caller.domain, "ksql query closed");
    Ok(Json(json!({})))
}
