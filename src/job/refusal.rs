//! A refused request: its error, the codes it carries, and how a message quotes the value it
//! refuses. Every part of the request parser (`request*.rs`, `param_chars.rs`) says no the same
//! way.

/// A refused request: the Devo `status` code and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{msg}")]
pub struct RequestError {
    pub code: u16,
    pub msg: String,
}

pub(super) fn err<T>(code: u16, msg: impl Into<String>) -> Result<T, RequestError> {
    Err(RequestError { code, msg: msg.into() })
}

/// Error codes. 205, 210 and 211 are Devo's; the others are ours.
pub mod codes {
    pub const BAD_BODY: u16 = 100;
    pub const BAD_QUERY: u16 = 101;
    pub const BAD_TIME: u16 = 102;
    pub const BAD_LIMIT: u16 = 103;
    pub const BAD_DESTINATION: u16 = 200;
    pub const BUCKET_NEEDS_CREDENTIALS: u16 = 205;
    pub const BAD_AWS_PARAM: u16 = 206;
    pub const BAD_FORMAT: u16 = 210;
    pub const PASSWORD_NEEDS_ZIP: u16 = 211;
    pub const SINGLE_FILE_FORMAT: u16 = 212;
    pub const BAD_RETENTION_SIZE: u16 = 213;
    pub const BAD_RETENTION_TIME: u16 = 214;
    pub const RETENTION_NEEDS_MULTIPLE: u16 = 215;
    pub const BAD_EMAIL: u16 = 216;
    pub const UNKNOWN_PARAM: u16 = 217;
    pub const BAD_FILE_FORMAT: u16 = 218;
    pub const BAD_PARQUET_COMPRESSION: u16 = 219;
    pub const BAD_MANIFEST: u16 = 220;
    /// A bad `file.*`, `azure.*` or `gcs.*` destination param.
    pub const BAD_STORE_PARAM: u16 = 221;
    /// An `azure` or `gcs` destination without its credentials (as 205 for S3).
    pub const STORE_NEEDS_CREDENTIALS: u16 = 222;
    /// A `file` destination on a server that has no `[destinations.file] root`.
    pub const FILE_NOT_CONFIGURED: u16 = 223;
}

/// A refused value as a message may quote it: escaped, and cut after 64 characters (a
/// megabyte-long value was sent back whole in the 400).
pub(super) fn shown(value: &str) -> String {
    let escaped: String = value.escape_debug().collect();
    match escaped.char_indices().nth(64) {
        Some((cut, _)) => format!("{}… ({} bytes)", &escaped[..cut], value.len()),
        None => escaped,
    }
}
