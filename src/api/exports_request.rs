//! What the async export calls take, checked: the tenant (`X-Tenant-ID`), ids, the body of
//! `POST /v1/queries` and of `POST /v1/queries/{id}/export/async`. Pure; every refusal is a
//! 4xx whose message says what to send instead. Codes 321–339 are this surface's.

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{ApiError, Caller};
use crate::job::{Encoding, Format, ParquetCompression};

pub mod codes {
    pub const BAD_BODY: u16 = 321;
    pub const BAD_QUERY: u16 = 322;
    pub const BAD_TIME: u16 = 323;
    pub const BAD_FORMAT: u16 = 324;
    pub const BAD_FLAG: u16 = 325;
    pub const UNKNOWN_FIELD: u16 = 326;
    pub const BAD_ID: u16 = 327;
    pub const TENANT_WIDENS: u16 = 328;
    pub const OVER_QUOTA: u16 = 329;
    pub const NOT_READY: u16 = 330;
}

/// The header by which a caller narrows its domain to one of its tenants.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// The domain a call acts in: the caller's, or the part of it `X-Tenant-ID` names — the
/// caller's domain itself or `<domain>/<tenant>` under it. A header that would reach outside
/// the caller's domain is refused (403), never ignored: the caller asked for something else.
pub fn tenant_domain(caller: &Caller, headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(TENANT_HEADER) else {
        return Ok(caller.domain.clone());
    };
    let domain = &caller.domain;
    let refuse = |why: &str| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            codes::TENANT_WIDENS,
            format!(
                "X-Tenant-ID {why}: it may only narrow your domain \"{domain}\"; send \"{domain}\" or \
                 \"{domain}/<tenant>\" (letters, digits, '-', '_', '.'), or leave the header out"
            ),
        )
    };
    let tenant = value.to_str().map_err(|_| refuse("is not plain text"))?.trim();
    if tenant == domain {
        return Ok(tenant.to_string());
    }
    let Some(sub) = tenant.strip_prefix(domain.as_str()).and_then(|rest| rest.strip_prefix('/')) else {
        return Err(refuse("names a domain outside yours"));
    };
    let plain = |name: &str| {
        !name.is_empty()
            && name != "."
            && name != ".."
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if tenant.len() > 200 || !sub.split('/').all(plain) {
        return Err(refuse("names no tenant"));
    }
    Ok(tenant.to_string())
}

/// An export or query id from the path: a UUID, else 400.
pub fn parse_id(what: &str, id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        let shown: String = id.chars().take(64).filter(|c| !c.is_control()).collect();
        ApiError::bad_request(
            codes::BAD_ID,
            format!("\"{shown}\" is not {what}: send the UUID the API gave you"),
        )
    })
}

fn object(body: &[u8], shape: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => {
            Err(ApiError::bad_request(codes::BAD_BODY, format!("the body must be a JSON object: {shape}")))
        }
        Err(e) => {
            Err(ApiError::bad_request(codes::BAD_BODY, format!("the body is not JSON ({e}); send {shape}")))
        }
    }
}

fn refuse_unknown(map: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => {
            let shown: String = k.chars().take(64).filter(|c| !c.is_control()).collect();
            Err(ApiError::bad_request(
                codes::UNKNOWN_FIELD,
                format!("unknown field \"{shown}\"; the fields are {}", known.join(", ")),
            ))
        }
    }
}

/// `POST /v1/queries`: what to run, over which time range.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub query: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

const REGISTRATION: &str = r#"{"query": "SELECT …", "from": <epoch s|ms or ISO-8601>, "to": …}"#;

pub fn parse_registration(body: &[u8]) -> Result<Registration, ApiError> {
    let map = object(body, REGISTRATION)?;
    refuse_unknown(&map, &["query", "from", "to"])?;
    let query = match map.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => crate::job::strip_pragmas(q),
        Some(Value::String(_)) => return Err(ApiError::bad_request(codes::BAD_QUERY, "\"query\" is empty")),
        Some(_) => return Err(ApiError::bad_request(codes::BAD_QUERY, "\"query\" must be a string of SQL")),
        None => {
            return Err(ApiError::bad_request(
                codes::BAD_QUERY,
                format!("\"query\" is missing; send {REGISTRATION}"),
            ));
        }
    };
    let time = |field: &str| match map.get(field) {
        None => Ok(None),
        Some(v) => {
            crate::job::parse_time(field, v).map_err(|e| ApiError::bad_request(codes::BAD_TIME, e.msg))
        }
    };
    let (from_ms, to_ms) = (time("from")?, time("to")?);
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && f >= t
    {
        return Err(ApiError::bad_request(codes::BAD_TIME, "\"from\" must be before \"to\""));
    }
    Ok(Registration { query, from_ms, to_ms })
}

/// The seed's `format`: what the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    /// JSON Lines: one object per row (see the README for why not one array).
    Json,
    Parquet,
}

impl ExportFormat {
    const ALL: [ExportFormat; 3] = [Self::Csv, Self::Json, Self::Parquet];

    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "CSV",
            Self::Json => "JSON",
            Self::Parquet => "PARQUET",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn from_encoding(encoding: Encoding) -> Self {
        match encoding {
            Encoding::Csv => Self::Csv,
            Encoding::Jsonl => Self::Json,
            Encoding::Parquet => Self::Parquet,
        }
    }

    pub fn encoding(self) -> Encoding {
        match self {
            Self::Csv => Encoding::Csv,
            Self::Json => Encoding::Jsonl,
            Self::Parquet => Encoding::Parquet,
        }
    }
}

/// `POST /v1/queries/{id}/export/async`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub format: ExportFormat,
    pub include_header: bool,
    pub compress: bool,
}

impl ExportRequest {
    /// How the file is packed: gzip around CSV and JSON Lines; Parquet compresses its pages
    /// inside the file (zstd), which keeps it readable by every Parquet reader.
    pub fn packing(&self) -> (Format, ParquetCompression) {
        match (self.format, self.compress) {
            (ExportFormat::Parquet, true) => (Format::Plain, ParquetCompression::Zstd),
            (ExportFormat::Parquet, false) => (Format::Plain, ParquetCompression::None),
            (_, true) => (Format::Gzip, ParquetCompression::default()),
            (_, false) => (Format::Plain, ParquetCompression::default()),
        }
    }
}

/// An empty body asks for the defaults: CSV with a header, uncompressed.
pub fn parse_export_request(body: &[u8]) -> Result<ExportRequest, ApiError> {
    const SHAPE: &str = r#"{"format": "CSV|JSON|PARQUET", "includeHeader": true, "compress": true}"#;
    let map = if body.iter().all(u8::is_ascii_whitespace) { Map::new() } else { object(body, SHAPE)? };
    refuse_unknown(&map, &["format", "includeHeader", "compress"])?;
    let formats = || ExportFormat::ALL.map(ExportFormat::name).join(", ");
    let format = match map.get("format") {
        None | Some(Value::Null) => ExportFormat::Csv,
        Some(Value::String(s)) => ExportFormat::parse(s).ok_or_else(|| {
            let shown: String = s.chars().take(32).filter(|c| !c.is_control()).collect();
            ApiError::bad_request(
                codes::BAD_FORMAT,
                format!("format \"{shown}\" is not one of {}", formats()),
            )
        })?,
        Some(_) => {
            return Err(ApiError::bad_request(
                codes::BAD_FORMAT,
                format!("format must be one of {}", formats()),
            ));
        }
    };
    let flag = |name: &str, default: bool| match map.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(codes::BAD_FLAG, format!("{name} must be true or false"))),
    };
    Ok(ExportRequest {
        format,
        include_header: flag("includeHeader", true)?,
        compress: flag("compress", false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller { domain: "acme".into(), owner: "t".into() }
    }

    fn with_tenant(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TENANT_HEADER, value.parse().unwrap());
        h
    }

    #[test]
    fn a_tenant_only_narrows_the_domain() {
        assert_eq!(tenant_domain(&caller(), &HeaderMap::new()).unwrap(), "acme");
        assert_eq!(tenant_domain(&caller(), &with_tenant("acme")).unwrap(), "acme");
        assert_eq!(tenant_domain(&caller(), &with_tenant("acme/sales")).unwrap(), "acme/sales");
        for wider in ["other", "acme2", "acme/", "acme/../other", "acme//x", "acme.sales", ""] {
            let e = tenant_domain(&caller(), &with_tenant(wider)).unwrap_err();
            assert_eq!((e.http, e.code), (StatusCode::FORBIDDEN, codes::TENANT_WIDENS), "{wider}");
        }
    }

    #[test]
    fn export_requests_say_what_to_fix() {
        let r = parse_export_request(br#"{"format":"parquet","compress":true}"#).unwrap();
        assert_eq!((r.format, r.include_header, r.packing().0), (ExportFormat::Parquet, true, Format::Plain));
        assert_eq!(parse_export_request(b"").unwrap().format, ExportFormat::Csv);
        for (body, code, needle) in [
            (&br#"{"format":"xml"}"#[..], codes::BAD_FORMAT, "CSV, JSON, PARQUET"),
            (br#"{"format":"CSV""#, codes::BAD_BODY, "not JSON"),
            (br#"{"compress":"yes"}"#, codes::BAD_FLAG, "compress must be true or false"),
            (br#"{"fromat":"CSV"}"#, codes::UNKNOWN_FIELD, "format, includeHeader, compress"),
            (b"[1]", codes::BAD_BODY, "JSON object"),
        ] {
            let e = parse_export_request(body).unwrap_err();
            assert_eq!(e.code, code, "{}", e.msg);
            assert!(e.msg.contains(needle), "{}", e.msg);
        }
    }

    #[test]
    fn registrations_need_a_query_and_an_ordered_window() {
        let r = parse_registration(br#"{"query":"SELECT 1","from":1767225600,"to":"2026-01-02T00:00:00Z"}"#)
            .unwrap();
        assert_eq!((r.from_ms, r.to_ms), (Some(1_767_225_600_000), Some(1_767_312_000_000)));
        assert_eq!(parse_registration(br#"{"from":1}"#).unwrap_err().code, codes::BAD_QUERY);
        assert_eq!(
            parse_registration(br#"{"query":"x","from":5,"to":1}"#).unwrap_err().code,
            codes::BAD_TIME
        );
        assert_eq!(parse_registration(br#"{"query":"x","from":"soon"}"#).unwrap_err().code, codes::BAD_TIME);
    }
}
