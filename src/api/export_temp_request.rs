//! What a `POST /v1/data/export-temp` asks for, read and checked before anything runs (pure).
//!
//! The destination is not parsed here: the body's `storage_type`, `bucket`, `credentials`,
//! `directory_path` and `options` are mapped onto a Devo job's `destination.params` and
//! parsed by [`crate::job::parse_submit`], so that this surface keeps the jobs' validation,
//! secret handling and endpoint rules; its messages are told back in this body's names.
//! Values are never quoted back for the fields that may hold a secret.

use serde_json::{Map, Value, json};

use crate::job::{Destination, Encoding, JobSecrets, Limits, RequestError, parse_submit, request_codes};

/// Error codes of this surface (the envelope's `exception.error_code`).
pub mod codes {
    pub const BAD_BODY: u16 = 341;
    pub const BAD_QUERY: u16 = 342;
    pub const BAD_STORAGE_TYPE: u16 = 343;
    pub const BAD_FORMAT: u16 = 344;
    pub const BAD_MODE: u16 = 345;
    pub const BAD_BUCKET: u16 = 346;
    pub const BAD_CREDENTIALS: u16 = 347;
    pub const BAD_DIRECTORY_PATH: u16 = 348;
    pub const BAD_SIZE: u16 = 349;
    pub const BAD_OPTIONS: u16 = 350;
    pub const FILE_NOT_CONFIGURED: u16 = 351;
    pub const DESTINATION_REFUSED: u16 = 352;
    pub const TIMED_OUT: u16 = 353;
    pub const BUSY: u16 = 354;
    pub const QUERY_FAILED: u16 = 355;
    pub const EXPORT_FAILED: u16 = 356;
    pub const CANCELLED: u16 = 357;
}
use codes::*;

/// `row_group_size` when absent: 40 MiB, as the seed gives it.
pub const DEFAULT_ROW_GROUP_SIZE: u64 = 40 << 20;
/// The open row group is held in memory: past this a request could take the server's.
pub const MAX_ROW_GROUP_SIZE: u64 = 256 << 20;
const MIN_ROW_GROUP_SIZE: u64 = 1024;
/// Smaller files would be mostly footer, and a large export thousands of objects.
const MIN_TARGET_FILE_SIZE: u64 = 64 << 10;
const MAX_ROW_GROUPS_PER_FILE: u64 = 1_000_000;

const FIELDS: [&str; 12] = [
    "query",
    "bucket",
    "credentials",
    "directory_path",
    "format",
    "storage_type",
    "options",
    "mode",
    "row_group_size",
    "target_file_size_bytes",
    "max_row_groups_per_file",
    "include_metrics",
];

/// A checked request.
#[derive(Debug)]
pub struct ExportTempRequest {
    pub query: String,
    pub destination: Destination,
    pub secrets: JobSecrets,
    pub encoding: Encoding,
    /// `single_file`: the one object's key; `multi_file`: `None` (parts under the prefix).
    pub single_key: Option<String>,
    pub row_group_size: u64,
    pub target_file_size_bytes: Option<u64>,
    pub max_row_groups_per_file: Option<u32>,
    pub include_metrics: bool,
}

fn bad<T>(code: u16, msg: impl Into<String>) -> Result<T, RequestError> {
    Err(RequestError { code, msg: msg.into() })
}

/// A text field: absent, `null` and blank are `None`; anything but a string is refused
/// (the value is not quoted: it may be a secret).
fn text(body: &Map<String, Value>, key: &str, name: &str, code: u16) -> Result<Option<String>, RequestError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => bad(code, format!("{name} must be a string")),
    }
}

fn flag(body: &Map<String, Value>, key: &str, name: &str, code: u16) -> Result<Option<bool>, RequestError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => bad(code, format!("{name} must be true or false")),
    }
}

/// A size: a whole number within `min..=max`, or absent.
fn size(body: &Map<String, Value>, key: &str, min: u64, max: u64) -> Result<Option<u64>, RequestError> {
    let value = match body.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let fix = format!("{key} must be a whole number from {min} to {max}");
    match value.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
        Some(n) => bad(BAD_SIZE, format!("{fix}; {n} is out of range")),
        None if value.as_i64().is_some_and(|n| n <= 0) || value.as_f64().is_some_and(|n| n <= 0.0) => {
            bad(BAD_SIZE, format!("{fix}; it must be positive"))
        }
        None => bad(BAD_SIZE, fix),
    }
}

fn object(
    body: &Map<String, Value>,
    key: &str,
    fields: &[&str],
    code: u16,
) -> Result<Map<String, Value>, RequestError> {
    let map = match body.get(key) {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return bad(code, format!("{key} must be an object with {}", fields.join(", "))),
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return bad(
            code,
            format!("{key} has an unknown field \"{}\"; it takes {}", shown(unknown), fields.join(", ")),
        );
    }
    Ok(map.clone())
}

/// Parses and checks a request body; `limits` are the jobs' (their destination rules apply).
pub fn parse(body: &[u8], limits: &Limits) -> Result<ExportTempRequest, RequestError> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return bad(
            BAD_BODY,
            "the body must be a JSON object with \"query\", \"bucket\", \"storage_type\", …",
        );
    };
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return bad(
            BAD_BODY,
            format!("unknown field \"{}\"; the body takes {}", shown(unknown), FIELDS.join(", ")),
        );
    }
    let query = text(&body, "query", "query", BAD_QUERY)?
        .map_or_else(|| bad(BAD_QUERY, "query is missing: give the SQL of what to export"), Ok)?;
    let kind = match text(&body, "storage_type", "storage_type", BAD_STORAGE_TYPE)? {
        None => return bad(BAD_STORAGE_TYPE, "storage_type is missing: use S3, GCS, Azure or File"),
        Some(t) => match t.to_ascii_lowercase().as_str() {
            "s3" => "s3",
            "gcs" => "gcs",
            "azure" => "azure",
            "file" => "file",
            _ => {
                return bad(
                    BAD_STORAGE_TYPE,
                    format!("storage_type \"{}\" is not one of S3, GCS, Azure, File", shown(&t)),
                );
            }
        },
    };
    let encoding =
        match text(&body, "format", "format", BAD_FORMAT)?.map(|f| f.to_ascii_lowercase()).as_deref() {
            None | Some("parquet") => Encoding::Parquet,
            Some("jsonl") => Encoding::Jsonl,
            Some(other) => {
                return bad(BAD_FORMAT, format!("format \"{}\" is not one of Parquet, Jsonl", shown(other)));
            }
        };
    let single = match text(&body, "mode", "mode", BAD_MODE)?.map(|m| m.to_ascii_lowercase()).as_deref() {
        None | Some("multi_file") => false,
        Some("single_file") => true,
        Some(other) => {
            return bad(BAD_MODE, format!("mode \"{}\" is not one of multi_file, single_file", shown(other)));
        }
    };
    let bucket = text(&body, "bucket", "bucket", BAD_BUCKET)?.map_or_else(
        || bad(BAD_BUCKET, "bucket is missing: name the bucket (the container for Azure, a directory under the server's file root for File)"),
        Ok,
    )?;
    let directory = text(&body, "directory_path", "directory_path", BAD_DIRECTORY_PATH)?.unwrap_or_default();
    if single && (directory.is_empty() || directory.ends_with('/')) {
        return bad(
            BAD_DIRECTORY_PATH,
            "with mode single_file, directory_path is the file's own path (like exports/out.parquet)",
        );
    }
    if let Some(why) = directory_problem(&directory) {
        return bad(BAD_DIRECTORY_PATH, format!("directory_path {why}"));
    }
    if bucket.len() > 255 {
        return bad(
            BAD_BUCKET,
            "bucket is over 255 bytes: no store takes a bucket, container or directory name that long",
        );
    }
    let credentials = object(&body, "credentials", &["access_key", "secret_key"], BAD_CREDENTIALS)?;
    let access_key = text(&credentials, "access_key", "credentials.access_key", BAD_CREDENTIALS)?;
    let secret_key = text(&credentials, "secret_key", "credentials.secret_key", BAD_CREDENTIALS)?;
    let options =
        object(&body, "options", &["endpoint", "allow_http", "virtual_hosted_style", "region"], BAD_OPTIONS)?;
    let endpoint = text(&options, "endpoint", "options.endpoint", BAD_OPTIONS)?;
    let allow_http = flag(&options, "allow_http", "options.allow_http", BAD_OPTIONS)?.unwrap_or(false);
    let virtual_hosted = flag(&options, "virtual_hosted_style", "options.virtual_hosted_style", BAD_OPTIONS)?;
    let region = text(&options, "region", "options.region", BAD_OPTIONS)?;
    if endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) && !allow_http {
        return bad(
            BAD_OPTIONS,
            "options.endpoint is an http:// URL: set options.allow_http to true to send over plain HTTP, or use https://",
        );
    }
    if let Some(e) = endpoint.as_deref() {
        let url = url::Url::parse(e).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if url.is_none() {
            return bad(
                BAD_OPTIONS,
                "options.endpoint must be the store's URL, like https://s3.example.com or http://127.0.0.1:4566 \
                 (or left out for the store's own)",
            );
        }
    }
    if kind == "file" && (!credentials.is_empty() || !options.is_empty()) {
        return bad(
            BAD_OPTIONS,
            "storage_type File writes under the server's own directory ([destinations.file] root): leave \
             credentials and options out",
        );
    }
    if kind != "s3" && (virtual_hosted.is_some() || region.is_some()) {
        return bad(
            BAD_OPTIONS,
            "options.virtual_hosted_style and options.region apply to storage_type S3 only",
        );
    }
    let include_metrics = flag(&body, "include_metrics", "include_metrics", BAD_BODY)?.unwrap_or(false);
    let row_group_size = size(&body, "row_group_size", MIN_ROW_GROUP_SIZE, MAX_ROW_GROUP_SIZE)?;
    let target = size(&body, "target_file_size_bytes", MIN_TARGET_FILE_SIZE, u64::MAX >> 1)?;
    let max_groups = size(&body, "max_row_groups_per_file", 1, MAX_ROW_GROUPS_PER_FILE)?;
    if encoding == Encoding::Jsonl && (row_group_size.is_some() || max_groups.is_some()) {
        return bad(
            BAD_SIZE,
            "row_group_size and max_row_groups_per_file apply to format Parquet only; leave them out for Jsonl",
        );
    }
    if single && (target.is_some() || max_groups.is_some()) {
        return bad(
            BAD_SIZE,
            "target_file_size_bytes and max_row_groups_per_file split the export into files: use them with mode multi_file",
        );
    }

    // The job's params: its checks, its secrets and its messages (renamed below).
    let prefix = match (single, directory.is_empty() || directory.ends_with('/')) {
        (false, false) => format!("{directory}/"),
        _ => directory.clone(),
    };
    let mut params = match kind {
        "s3" => json!({
            "aws.bucket": bucket, "aws.region": region.unwrap_or_else(|| "us-east-1".into()),
            "aws.accesskey": access_key, "aws.secretkey": secret_key, "aws.endpoint": endpoint,
            "aws.pathstyle": !virtual_hosted.unwrap_or(false), "aws.prefix": prefix,
        }),
        "azure" => json!({
            "azure.account": access_key, "azure.container": bucket, "azure.accesskey": secret_key,
            "azure.endpoint": endpoint, "azure.prefix": prefix,
        }),
        "gcs" => {
            json!({"gcs.bucket": bucket, "gcs.credentials": secret_key, "gcs.endpoint": endpoint, "gcs.prefix": prefix})
        }
        _ => json!({"file.directory": format!("{bucket}/{directory}")}),
    };
    let format = if encoding == Encoding::Parquet { "parquet" } else { "jsonl" };
    let shape = json!({"file.format": format, "format": "plain", "multiplefile": false});
    params.as_object_mut().expect("an object").extend(shape.as_object().expect("an object").clone());
    let submit = json!({"query": query, "destination": {"type": kind, "params": params}});
    let (spec, secrets) = parse_submit(submit.to_string().as_bytes(), limits).map_err(told_in_our_names)?;
    let single_key = single.then(|| spec.destination.prefix.trim_end_matches('/').to_string());
    Ok(ExportTempRequest {
        query: spec.query,
        destination: spec.destination,
        secrets,
        encoding,
        single_key,
        row_group_size: row_group_size.unwrap_or(DEFAULT_ROW_GROUP_SIZE),
        // The row-group cap takes precedence over the size.
        target_file_size_bytes: target.filter(|_| max_groups.is_none()),
        max_row_groups_per_file: max_groups.map(|n| n as u32),
        include_metrics,
    })
}

/// The jobs' parameter names, as this body names them (longest first where one contains
/// another).
const NAMES: [(&str, &str); 17] = [
    ("destination.params.", ""),
    ("aws.accesskey", "credentials.access_key"),
    ("aws.secretkey", "credentials.secret_key"),
    ("aws.sessiontoken", "credentials"),
    ("aws.bucket", "bucket"),
    ("aws.region", "options.region"),
    ("aws.endpoint", "options.endpoint"),
    ("aws.prefix", "directory_path"),
    ("azure.account", "credentials.access_key (the storage account)"),
    ("azure.accesskey", "credentials.secret_key (the account key)"),
    ("azure.sastoken", "credentials.secret_key"),
    ("azure.container", "bucket"),
    ("azure.endpoint", "options.endpoint"),
    ("azure.prefix", "directory_path"),
    ("gcs.credentials", "credentials.secret_key (the service account's JSON key)"),
    ("gcs.endpoint", "options.endpoint"),
    ("gcs.prefix", "directory_path"),
];

/// A message of the job's parsing or of the destination, in this body's names.
pub fn in_our_names(msg: &str) -> String {
    let mut msg = msg.replace("gcs.bucket", "bucket").replace("file.directory", "bucket and directory_path");
    for (theirs, ours) in NAMES {
        msg = msg.replace(theirs, ours);
    }
    msg
}

fn told_in_our_names(e: RequestError) -> RequestError {
    let msg = in_our_names(&e.msg);
    let code = match e.code {
        request_codes::BUCKET_NEEDS_CREDENTIALS | request_codes::STORE_NEEDS_CREDENTIALS => BAD_CREDENTIALS,
        request_codes::BAD_QUERY => BAD_QUERY,
        _ if msg.starts_with("credentials") || msg.contains("credentials.") => BAD_CREDENTIALS,
        _ if msg.starts_with("options") => BAD_OPTIONS,
        _ if msg.starts_with("directory_path") || msg.contains("directory_path") => BAD_DIRECTORY_PATH,
        _ if msg.starts_with("bucket") => BAD_BUCKET,
        _ => BAD_BODY,
    };
    RequestError { code, msg }
}

/// A refused value as a message may quote it: escaped, and cut after 64 characters.
fn shown(value: &str) -> String {
    let escaped: String = value.escape_debug().collect();
    match escaped.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

#[cfg(test)]
#[path = "export_temp_request_tests.rs"]
mod tests;

/// Why `directory_path` cannot name a place inside the bucket, for every storage type alike:
/// an object store would take `../x` as a literal key that a URL then resolves outside the
/// bucket, and a file system refuses what is too long.
fn directory_problem(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        return Some("is absolute: give a path inside the bucket, like exports/daily");
    }
    if path.len() > 1024 {
        return Some("is over 1024 bytes, the longest key S3 takes");
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return None;
    }
    trimmed.split('/').find_map(|segment| match segment {
        "" => Some("has an empty segment (//): write each folder once"),
        "." | ".." => Some("has a . or .. segment: give the path inside the bucket without them"),
        s if s.len() > 255 => Some("has a folder or file name over 255 bytes"),
        _ => None,
    })
}
