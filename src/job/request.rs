//! Parsing and validation of `POST /search/query` bodies (Devo Query API v2). Everything is
//! checked here, before anything is queued; an error says what to fix, with Devo's code where
//! Devo has one.

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::limits::Limits;
pub use super::refusal::{RequestError, codes};
use super::refusal::{err, shown};
use super::request_dest::{AZURE_PARAMS, FILE_PARAMS, GCS_PARAMS, Place};
use super::request_shape::{Shape, as_bool, parse_shape};
use super::spec::{Destination, DestinationType, Format, JobSecrets, JobSpec};
use crate::secret::Secret;

use codes::*;

/// The body as Devo clients send it. Unknown top-level fields (`mode`, `keepAlive`,
/// `timeZone`, `ipAsString`, `dateFormat`, `offset`, …) are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct SubmitRequest {
    pub query: Option<Value>,
    pub from: Option<Value>,
    pub to: Option<Value>,
    pub limit: Option<Value>,
    pub destination: Option<Value>,
}

const AWS_PARAMS: &[&str] = &[
    "aws.bucket",
    "aws.region",
    "aws.accesskey",
    "aws.secretkey",
    "aws.sessiontoken",
    "aws.endpoint",
    "aws.pathstyle",
    "aws.prefix",
    "aws.sse",
    "aws.kmskeyid",
    "aws.storageclass",
];

/// The params of every destination type: what goes into a part, and who hears of the job.
const COMMON_PARAMS: &[&str] = &[
    "format",
    "file.format",
    "file.password",
    "parquet.compression",
    "manifest",
    "notification.email",
    "multiplefile",
    "retention.size",
    "retention.time",
];

/// Turns a request body into a job spec and its secrets, or says what is wrong.
pub fn parse_submit(body: &[u8], limits: &Limits) -> Result<(JobSpec, JobSecrets), RequestError> {
    let req: SubmitRequest = serde_json::from_slice(body)
        .or_else(|e| err(BAD_BODY, format!("the body must be a JSON object with a \"query\" field: {e}")))?;
    let query = match req.query {
        Some(Value::String(q)) => strip_pragmas(&q),
        Some(_) => return err(BAD_QUERY, "\"query\" must be a string"),
        None => return err(BAD_QUERY, "\"query\" is missing"),
    };
    if query.trim().is_empty() {
        return err(BAD_QUERY, "\"query\" is empty");
    }
    let from_ms = req.from.as_ref().map(|v| parse_time("from", v)).transpose()?.flatten();
    let to_ms = req.to.as_ref().map(|v| parse_time("to", v)).transpose()?.flatten();
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && f >= t
    {
        let fix = if f == t { "the window is empty; set \"to\" later than \"from\"" } else { "swap them" };
        return err(BAD_TIME, format!("\"from\" must be before \"to\": {fix}"));
    }
    let limit = match req.limit {
        None | Some(Value::Null) => None,
        Some(v) => match as_u64(&v) {
            Some(n) if n > 0 => Some(n),
            _ => return err(BAD_LIMIT, "\"limit\" must be a positive whole number of rows"),
        },
    };
    let (destination, secrets) = match req.destination {
        Some(Value::Object(d)) => parse_destination(&d, limits)?,
        Some(_) => return err(BAD_DESTINATION, "\"destination\" must be an object"),
        None => {
            return err(BAD_DESTINATION, "\"destination\" is missing: send {\"type\":\"s3\",\"params\":{…}}");
        }
    };
    Ok((JobSpec { query, from_ms, to_ms, limit, destination }, secrets))
}

/// Devo clients append `pragma comment.id:"…" pragma comment.user:"…"`; strip them.
pub fn strip_pragmas(query: &str) -> String {
    static PRAGMA: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(?i)\s*pragma\s+[\w.]+\s*:\s*"(?:[^"\\]|\\.)*""#).expect("valid regex")
    });
    PRAGMA.replace_all(query, "").trim().to_string()
}

/// Epoch seconds, epoch milliseconds (anything above 10^11) or ISO-8601; `null` = absent.
pub fn parse_time(field: &str, v: &Value) -> Result<Option<i64>, RequestError> {
    let bad = || {
        err(
            BAD_TIME,
            format!("\"{field}\" must be epoch seconds, epoch milliseconds or an ISO-8601 date-time"),
        )
    };
    let number = |n: f64| -> Result<Option<i64>, RequestError> {
        if !n.is_finite() || !(0.0..=1e15).contains(&n) {
            return bad();
        }
        Ok(Some(if n > 1e11 { n as i64 } else { (n * 1000.0) as i64 }))
    };
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => {
            if let Ok(n) = s.trim().parse::<f64>() {
                return number(n);
            }
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
                return Ok(Some(t.timestamp_millis()));
            }
            // ISO-8601 also writes offsets without a colon (`+0100`).
            for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
                if let Ok(t) = chrono::DateTime::parse_from_str(s.trim(), fmt) {
                    return Ok(Some(t.timestamp_millis()));
                }
            }
            for fmt in
                ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
            {
                if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim(), fmt) {
                    return Ok(Some(t.and_utc().timestamp_millis()));
                }
            }
            if let Ok(d) = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
                return Ok(Some(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis()));
            }
            bad()
        }
        _ => bad(),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e18).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

fn parse_destination(
    d: &Map<String, Value>,
    limits: &Limits,
) -> Result<(Destination, JobSecrets), RequestError> {
    let types = || DestinationType::ALL.map(|t| format!("\"{}\"", t.name())).join(", ");
    let kind = match d.get("type") {
        Some(Value::String(t)) => DestinationType::parse(t).map_or_else(
            || {
                err(
                    BAD_DESTINATION,
                    format!("destination type \"{}\" is not supported; use one of {}", shown(t), types()),
                )
            },
            Ok,
        )?,
        _ => return err(BAD_DESTINATION, format!("destination.type is missing; use one of {}", types())),
    };
    let empty = Map::new();
    let params = match d.get("params") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => &empty,
        Some(_) => return err(BAD_DESTINATION, "destination.params must be an object"),
    };
    let own: &[&str] = match kind {
        DestinationType::S3 => AWS_PARAMS,
        DestinationType::File => FILE_PARAMS,
        DestinationType::Azure => AZURE_PARAMS,
        DestinationType::Gcs => GCS_PARAMS,
        // Not parsed from a request: DestinationType::parse knows only ALL.
        DestinationType::Download => &[],
    };
    if let Some(unknown) =
        params.keys().find(|k| !own.contains(&k.as_str()) && !COMMON_PARAMS.contains(&k.as_str()))
    {
        return err(
            UNKNOWN_PARAM,
            format!(
                "destination.params has an unknown parameter \"{}\" for type {}; known: {}, {}",
                shown(unknown),
                kind.name(),
                own.join(", "),
                COMMON_PARAMS.join(", ")
            ),
        );
    }
    super::param_chars::check(params)?;
    let place = match kind {
        DestinationType::S3 => aws_place(params)?,
        other => super::request_dest::place(other, params)?,
    };
    let text = |key: &str| super::request_dest::text(params, key, BAD_AWS_PARAM);

    let Shape { format, file_format, parquet_compression, manifest, file_password } = parse_shape(params)?;
    let multiple_file = match params.get("multiplefile") {
        None | Some(Value::Null) => true,
        Some(v) => {
            as_bool(v).map_or_else(|| err(SINGLE_FILE_FORMAT, "multiplefile must be true or false"), Ok)?
        }
    };
    if !multiple_file && format == Format::Zip {
        return err(SINGLE_FILE_FORMAT, "multiplefile=false works only with format gzip, zstd or plain");
    }
    let size = params.get("retention.size").filter(|v| !v.is_null());
    let time = params.get("retention.time").filter(|v| !v.is_null());
    if !multiple_file && (size.is_some() || time.is_some()) {
        return err(
            RETENTION_NEEDS_MULTIPLE,
            "retention.size and retention.time work only with multiplefile=true",
        );
    }
    let retention_bytes = if multiple_file {
        let mb = match size {
            None => limits.retention_size_mb_default,
            Some(v) => as_f64(v)
                .map_or_else(|| err(BAD_RETENTION_SIZE, "retention.size must be a number of MB"), Ok)?,
        };
        if mb < limits.retention_size_mb_min || mb > limits.retention_size_mb_max {
            return err(
                BAD_RETENTION_SIZE,
                format!(
                    "retention.size must be between {} and {} (MB)",
                    limits.retention_size_mb_min, limits.retention_size_mb_max
                ),
            );
        }
        Some((mb * 1_000_000.0).round() as u64)
    } else {
        None
    };
    let retention_time = match time {
        None => None,
        Some(v) => {
            let secs = as_u64(v)
                .map_or_else(|| err(BAD_RETENTION_TIME, "retention.time must be whole seconds"), Ok)?;
            if secs < limits.retention_time_secs_min || secs > limits.retention_time_secs_max {
                return err(
                    BAD_RETENTION_TIME,
                    format!(
                        "retention.time must be between {} and {} seconds",
                        limits.retention_time_secs_min, limits.retention_time_secs_max
                    ),
                );
            }
            Some(Duration::from_secs(secs))
        }
    };
    let notification_emails =
        match text("notification.email").map_err(|e| RequestError { code: BAD_EMAIL, ..e })? {
            None => vec![],
            Some(list) => list
                .split([',', ';'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|a| {
                    a.parse::<lettre::Address>().map(|_| a.to_string()).or_else(|_| {
                        err(BAD_EMAIL, format!("notification.email: \"{}\" is not a valid address", shown(a)))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };

    let mut secrets = place.secrets;
    secrets.file_password = file_password;
    let destination = Destination {
        kind,
        bucket: place.bucket,
        account: place.account,
        region: place.region,
        endpoint: place.endpoint,
        path_style: place.path_style,
        prefix: place.prefix,
        sse: place.sse,
        kms_key_id: place.kms_key_id,
        storage_class: place.storage_class,
        format,
        file_format,
        parquet_compression,
        manifest,
        encrypted: secrets.file_password.is_some(),
        multiple_file,
        retention_bytes,
        retention_time,
        notification_emails,
        download: None,
    };
    Ok((destination, secrets))
}

/// Where and as whom an `s3` destination writes (Devo's `aws.*` params and ours).
fn aws_place(params: &Map<String, Value>) -> Result<Place, RequestError> {
    let text = |key: &str| super::request_dest::text(params, key, BAD_AWS_PARAM);
    let bucket = text("aws.bucket")?;
    let region = text("aws.region")?;
    let access_key = text("aws.accesskey")?;
    let secret_key = text("aws.secretkey")?;
    let session_token = text("aws.sessiontoken")?;
    if bucket.is_some() && (region.is_none() || access_key.is_none() || secret_key.is_none()) {
        return err(
            BUCKET_NEEDS_CREDENTIALS,
            "a request that names aws.bucket must also give aws.region, aws.accesskey and aws.secretkey",
        );
    }
    if bucket.is_none() && (access_key.is_some() || secret_key.is_some()) {
        return err(
            BUCKET_NEEDS_CREDENTIALS,
            "aws.accesskey and aws.secretkey need aws.bucket (and aws.region)",
        );
    }
    if access_key.is_some() != secret_key.is_some() {
        return err(BUCKET_NEEDS_CREDENTIALS, "aws.accesskey and aws.secretkey go together");
    }
    if let Some(b) = &bucket
        && !valid_bucket_name(b)
    {
        return err(
            BAD_AWS_PARAM,
            format!(
                "aws.bucket \"{}\" is not a valid bucket name (3-63 lowercase letters, digits, dots, hyphens)",
                shown(b)
            ),
        );
    }
    let endpoint = text("aws.endpoint")?;
    if let Some(e) = &endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return err(BAD_AWS_PARAM, "aws.endpoint must be an http:// or https:// URL");
    }
    // Without a bucket the worker writes as itself: its own credentials must never be sent to
    // an endpoint the caller chose.
    if bucket.is_none() && (endpoint.is_some() || session_token.is_some()) {
        return err(
            BUCKET_NEEDS_CREDENTIALS,
            "aws.endpoint and aws.sessiontoken need aws.bucket, aws.region, aws.accesskey and aws.secretkey \
             (without them the export goes to the server's own default destination)",
        );
    }
    let path_style = match params.get("aws.pathstyle") {
        None | Some(Value::Null) => false,
        Some(v) => {
            as_bool(v).map_or_else(|| err(BAD_AWS_PARAM, "aws.pathstyle must be true or false"), Ok)?
        }
    };
    let prefix = text("aws.prefix")?.unwrap_or_default();
    if prefix.starts_with('/') || prefix.len() > 512 {
        return err(BAD_AWS_PARAM, "aws.prefix must not start with '/' and must be under 512 characters");
    }

    if let Some(r) = &region
        && !(r.len() <= 64 && r.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'))
    {
        return err(
            BAD_AWS_PARAM,
            format!("aws.region \"{}\" is not a region name (like eu-west-1)", shown(r)),
        );
    }
    let (sse, kms_key_id, storage_class) =
        (text("aws.sse")?, text("aws.kmskeyid")?, text("aws.storageclass")?);
    // Checked here, not left to S3: a job must not be queued only to fail at its first upload.
    if let Some(v) = &sse
        && !SSE_ALGORITHMS.contains(&v.as_str())
    {
        return err(
            BAD_AWS_PARAM,
            format!("aws.sse \"{}\" is not supported; use {}", shown(v), SSE_ALGORITHMS.join(", ")),
        );
    }
    if kms_key_id.is_some() && !sse.as_deref().is_some_and(|v| v.starts_with("aws:kms")) {
        return err(BAD_AWS_PARAM, "aws.kmskeyid needs aws.sse set to aws:kms or aws:kms:dsse");
    }
    let storage_classes = aws_sdk_s3::types::StorageClass::values();
    if let Some(v) = &storage_class
        && !storage_classes.contains(&v.as_str())
    {
        return err(
            BAD_AWS_PARAM,
            format!(
                "aws.storageclass \"{}\" is not a storage class; use one of {}",
                shown(v),
                storage_classes.join(", ")
            ),
        );
    }

    Ok(Place {
        bucket,
        region,
        endpoint,
        path_style,
        prefix,
        sse,
        kms_key_id,
        storage_class,
        secrets: JobSecrets {
            access_key: access_key.map(Secret::new),
            secret_key: secret_key.map(Secret::new),
            session_token: session_token.map(Secret::new),
            ..JobSecrets::default()
        },
        ..Place::default()
    })
}

/// Server-side encryption a write may ask for (S3 reports others, like `aws:fsx`, but
/// accepts only these on a write).
const SSE_ALGORITHMS: [&str; 3] = ["AES256", "aws:kms", "aws:kms:dsse"];

fn valid_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
#[path = "request_props.rs"]
mod props;
#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
