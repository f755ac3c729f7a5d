//! Who is calling. Every endpoint but `/healthz` and `/readyz` needs one of:
//! - Devo's signed API key: `x-logtrust-apikey`, `x-logtrust-timestamp` (ms) and
//!   `x-logtrust-sign` = hex HMAC-SHA256(secret, apikey + body + timestamp). Stale timestamps
//!   are refused, and so is a signed submission (POST) sent twice. Signed GETs may repeat
//!   within the window: Devo's SDK signs with a timestamp in whole seconds, so two reads of
//!   the same job in one second carry the same signature. But only on the same method and
//!   path: the signature does not cover the path, so it is bound to the first one it was
//!   used with ([`super::signatures`]).
//! - `Authorization: Bearer <token>`.
//! - On ksqlDB's paths only (`/query`, `/close-query`), HTTP Basic as ksqlDB's clients send it:
//!   a token as the password (any user), or an API key and its secret as user and password.
//!   Not elsewhere: a secret sent as it is, unsigned, could be replayed, and Devo's clients sign.
//!
//! Keys and tokens come from the configuration or from `forwarder auth`; each belongs to a
//! domain, and a caller sees only its domain's jobs.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::signatures::Refused;
use super::{ApiError, AppState};
use crate::secret::Secret;
use crate::store::{CredentialKind, token_lookup};

/// Largest request body accepted (a query and its destination fit many times over).
pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Caller {
    pub domain: String,
    /// The key or token id, shown as the job's `owner`.
    pub owner: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::unauthorized("not authenticated"))
    }
}

/// Middleware: identifies the caller (reading the body, which signed requests cover) and
/// hands the request on with the [`Caller`] attached.
pub async fn authenticate(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let ksql = super::ksql::takes_basic_auth(parts.uri.path());
    let target = match parts.uri.path_and_query() {
        Some(path) => format!("{} {path}", parts.method),
        None => format!("{} {}", parts.method, parts.uri.path()),
    };
    // A bearer token (or no credential) is checked before the body is read: a caller who is
    // nobody cannot make the server wait for, or hold, a body of up to MAX_BODY.
    let by_token = if parts.headers.contains_key("x-logtrust-apikey") {
        None
    } else {
        match identify(&state, &parts.headers, &Bytes::new(), &target, false, ksql).await {
            Ok(caller) => Some(caller),
            Err(refused) => return Ok(refused_before_the_body(refused, &parts.headers, ksql)),
        }
    };
    // The whole body within the deadline, not only each piece of it: a client sending a byte
    // a second would otherwise hold its connection (and a task) for as long as it likes.
    let deadline = state.config.server.body_read_timeout;
    let shaped = |e: ApiError| if ksql { super::ksql::error_response(e) } else { e.into_response() };
    let body = match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => return Ok(shaped(ApiError::body_too_slow(deadline))),
        Ok(Err(_)) => return Ok(shaped(ApiError::too_large(MAX_BODY))),
        Ok(Ok(body)) => body,
    };
    let caller = match by_token {
        Some(caller) => caller,
        None => {
            let submits = parts.method == axum::http::Method::POST;
            match identify(&state, &parts.headers, &body, &target, submits, ksql).await {
                Ok(caller) => caller,
                Err(refused) => return Ok(shaped(refused)),
            }
        }
    };
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// The refusal of a request whose body was never read: if it has one, the connection cannot
/// carry another request, and a pooling client must be told so.
fn refused_before_the_body(refused: ApiError, headers: &HeaderMap, ksql: bool) -> Response {
    use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
    let mut response = if ksql { super::ksql::error_response(refused) } else { refused.into_response() };
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || header(headers, CONTENT_LENGTH.as_str()).is_some_and(|n| n != "0");
    if has_body {
        response.headers_mut().insert(CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    target: &str,
    submits: bool,
    basic_allowed: bool,
) -> Result<Caller, ApiError> {
    if let Some(key) = header(headers, "x-logtrust-apikey") {
        return signed(state, headers, key, body, target, submits).await;
    }
    let (scheme, credentials) = header(headers, "authorization")
        .and_then(|v| v.split_once(' '))
        .map(|(scheme, rest)| (scheme, rest.trim()))
        .unwrap_or_default();
    // Schemes are case-insensitive (RFC 9110): `bearer` works as well as `Bearer`.
    if scheme.eq_ignore_ascii_case("basic") && basic_allowed {
        return basic(state, credentials).await;
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        let hint = if basic_allowed {
            ", or HTTP Basic (a token as the password, or an API key and its secret)"
        } else {
            ""
        };
        return Err(ApiError::unauthorized(&format!(
            "send Authorization: Bearer <token>, or Devo's x-logtrust-apikey / -timestamp / -sign headers{hint}"
        )));
    }
    by_token(state, credentials).await?.ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))
}

/// The caller a bearer token names, if any.
async fn by_token(state: &AppState, token: &str) -> Result<Option<Caller>, ApiError> {
    if let Some(t) = state
        .config
        .auth
        .tokens
        .iter()
        .find(|t| constant_time_eq(t.token.expose().as_bytes(), token.as_bytes()))
    {
        return Ok(Some(Caller { domain: t.domain.clone(), owner: format!("token@{}", t.domain) }));
    }
    let found = state.credentials.find_credential(CredentialKind::Token, &token_lookup(token)).await?;
    Ok(found.map(|c| Caller { domain: c.domain, owner: c.id }))
}

/// An API key's secret and the caller it names, if the key is known and not revoked.
async fn by_api_key(state: &AppState, key: &str) -> Result<Option<(Secret, Caller)>, ApiError> {
    if let Some(k) = state.config.auth.api_keys.iter().find(|k| k.key == key) {
        return Ok(Some((k.secret.clone(), Caller { domain: k.domain.clone(), owner: k.key.clone() })));
    }
    let Some(c) = state.credentials.find_credential(CredentialKind::ApiKey, key).await? else {
        return Ok(None);
    };
    let secret: Option<Secret> = c.sealed.as_deref().and_then(|s| state.secrets.open(s).ok());
    // The credential's id, as `forwarder auth list` shows it (and revokes it by).
    Ok(secret.map(|secret| (secret, Caller { domain: c.domain, owner: c.id })))
}

/// HTTP Basic, as ksqlDB's clients send it: an API key and its secret as user and password,
/// or a token as the password (whatever the user).
async fn basic(state: &AppState, credentials: &str) -> Result<Caller, ApiError> {
    use base64::Engine as _;
    let refused = || {
        ApiError::unauthorized(
            "unknown user or password: send an API key and its secret as user and password, or a token as the password",
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| ApiError::unauthorized("Authorization: Basic takes base64 of user:password"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| ApiError::unauthorized("Authorization: Basic takes base64 of user:password"))?;
    if !user.is_empty()
        && let Some((secret, caller)) = by_api_key(state, user).await?
    {
        return if constant_time_eq(secret.expose().as_bytes(), password.as_bytes()) {
            Ok(caller)
        } else {
            Err(refused())
        };
    }
    by_token(state, password).await?.ok_or_else(refused)
}

async fn signed(
    state: &AppState,
    headers: &HeaderMap,
    key: &str,
    body: &Bytes,
    target: &str,
    submits: bool,
) -> Result<Caller, ApiError> {
    let (Some(timestamp), Some(sign)) =
        (header(headers, "x-logtrust-timestamp"), header(headers, "x-logtrust-sign"))
    else {
        return Err(ApiError::unauthorized(
            "a signed request needs x-logtrust-timestamp (ms) and x-logtrust-sign",
        ));
    };
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| ApiError::unauthorized("x-logtrust-timestamp must be epoch milliseconds"))?;
    let skew = state.config.auth.max_clock_skew;
    if ts < 100_000_000_000 {
        return Err(ApiError::unauthorized(
            "x-logtrust-timestamp must be epoch milliseconds; this looks like seconds",
        ));
    }
    if (crate::job::now_ms() - ts).unsigned_abs() > skew.as_millis() as u64 {
        return Err(ApiError::unauthorized(&format!(
            "x-logtrust-timestamp is more than {} from the server's clock: sign each request with the current time",
            humantime_serde::re::humantime::format_duration(skew)
        )));
    }
    let (secret, caller) =
        by_api_key(state, key).await?.ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
    if !signature_matches(&secret, key, body, timestamp, sign) {
        return Err(ApiError::unauthorized(
            "x-logtrust-sign does not match: sign apikey + body + timestamp with the key's secret (HMAC-SHA256, hex)",
        ));
    }
    // Lower case, as it was matched: `AB…` and `ab…` are one signature.
    let sign = sign.to_ascii_lowercase();
    let sign = sign.as_str();
    let whole_second = ts % 1000 == 0;
    match state.signatures.bind(
        sign,
        target,
        whole_second,
        ts + skew.as_millis() as i64,
        crate::job::now_ms(),
    ) {
        Ok(()) => {}
        Err(Refused::BoundElsewhere) => {
            return Err(ApiError::unauthorized(
                "this signature was already used for another method or path: a signed request is good for the call it was \
                 made for; sign each request anew",
            ));
        }
        Err(Refused::Full { retry_after_ms }) => {
            tracing::warn!(
                remembered = state.signatures.len(),
                "signed request refused: too many signatures in the clock-skew window"
            );
            return Err(ApiError::too_many(
                429,
                "too many signed requests in the clock-skew window (auth.max_clock_skew); try again shortly",
                (retry_after_ms as u64).div_ceil(1000),
            ));
        }
    }
    // Kept in the store, so that a request captured on its way to one server is refused by
    // every server sharing it, and after a restart. A stale timestamp is refused anyway, so
    // a signature need not be kept past twice the window.
    if submits
        && !state
            .credentials
            .first_use_of_signature(sign, crate::job::now_ms() + 2 * skew.as_millis() as i64)
            .await?
    {
        return Err(ApiError::unauthorized("this signed request was already used: sign each request anew"));
    }
    Ok(caller)
}

/// Devo's signature: hex HMAC-SHA256(secret, apikey + body + timestamp).
pub fn sign(secret: &str, key: &str, body: &[u8], timestamp: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(key.as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn signature_matches(secret: &Secret, key: &str, body: &[u8], timestamp: &str, presented: &str) -> bool {
    constant_time_eq(
        sign(secret.expose(), key, body, timestamp).as_bytes(),
        presented.to_ascii_lowercase().as_bytes(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_devo() {
        // hmac.new(b"s3cr3t", b"key{}1700000000000", hashlib.sha256).hexdigest()
        let s = sign("s3cr3t", "key", b"{}", "1700000000000");
        assert_eq!(s, "b601e4ffc613742bd8212fb069bd81188b991c0f75494f964ab661b6fd020a6a");
        assert!(signature_matches(&Secret::new("s3cr3t"), "key", b"{}", "1700000000000", &s.to_uppercase()));
        assert!(!signature_matches(&Secret::new("other"), "key", b"{}", "1700000000000", &s));
        assert!(!signature_matches(&Secret::new("s3cr3t"), "key", b"{ }", "1700000000000", &s));
    }
}
