//! The upload's sections of the configuration: `[s3]`, the worker's own destination and
//! credentials, and `[upload]`, how parts are sent. They live here, with the code that reads
//! them; `config.rs` gathers them with the other sections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::endpoint::Allowed;
use crate::secret::Secret;

/// The worker's own S3 settings: the destination of requests that name no `aws.*`
/// parameters, and where catalog tables at `s3://` locations are read. Credentials are the
/// keys given here or, without them, the worker's AWS credential chain (environment, profile,
/// instance role).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Defaults {
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<Secret>,
    /// Hosts, addresses or networks (CIDR) a request's `aws.endpoint` may reach although
    /// they are internal (loopback, private, link-local): e.g. `["minio.internal", "10.0.0.0/8"]`,
    /// or, as an environment variable is written, `minio.internal,10.0.0.0/8`.
    #[serde(deserialize_with = "list_or_commas")]
    pub allowed_endpoints: Vec<String>,
}

/// A list, or one text of comma-separated entries (`FORWARDER_S3__ALLOWED_ENDPOINTS=a,b`).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Entries {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Entries::deserialize(d)? {
        Entries::List(list) => list,
        Entries::Text(text) => {
            text.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect()
        }
    })
}

impl S3Defaults {
    pub fn allowed(&self) -> Vec<Allowed> {
        self.allowed_endpoints.iter().map(|e| Allowed::parse(e)).collect()
    }
}

/// How the parts of an object are sent (`[upload]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// Size of one S3 multipart upload part, in MiB (at least 5, S3's minimum). It doubles
    /// every 1,000 parts so that one object can grow past 10,000 parts' worth.
    pub part_size_mib: u64,
    /// Upload parts in flight at once, per job.
    pub concurrency: usize,
    /// Attempts per S3 call (transient errors are retried with backoff and jitter).
    pub max_attempts: u32,
    /// Time limit of one S3 call attempt.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self { part_size_mib: 8, concurrency: 4, max_attempts: 6, attempt_timeout: Duration::from_secs(120) }
    }
}
