//! Who is calling: a bearer token from the configuration names the caller's domain. With no
//! token configured the API is open and everything belongs to the domain `default`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};

#[derive(Debug, Clone)]
pub struct Caller {
    pub domain: String,
    pub owner: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let tokens = &state.config.auth.tokens;
        if tokens.is_empty() {
            return Ok(Caller { domain: "default".into(), owner: "anonymous".into() });
        }
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
        tokens
            .iter()
            .find(|t| constant_time_eq(t.token.expose().as_bytes(), presented.trim().as_bytes()))
            .map(|t| Caller { domain: t.domain.clone(), owner: format!("token@{}", t.domain) })
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
