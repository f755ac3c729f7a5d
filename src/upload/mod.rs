//! Uploads in layers, as `object_store` does: the raw calls of each destination behind the
//! small [`Uploader`] trait (S3 in [`s3::S3Uploader`], Azure and GCS in
//! [`objects::ObjectStoreUploader`], the file system in [`local::LocalUploader`], picked by
//! [`DestinationSettings`]), and [`ObjectUpload`], the handle that turns a stream of chunks
//! into one object (lazy multipart upload, bounded concurrency, abort on failure).

mod attempts;
mod clash;
pub mod cloud;
pub mod destinations;
mod dir_usage;
pub mod endpoint;
mod fingerprint;
mod handle;
mod leftovers;
pub mod local;
mod metered;
pub mod objects;
pub mod s3;
mod scrub;
mod settings;

pub use destinations::{DestinationSettings, DestinationsConfig, FileDestinationConfig};
pub use dir_usage::used_bytes;
pub use handle::ObjectUpload;
pub use metered::Metered;
pub use s3::S3Uploader;
pub use settings::{S3Defaults, UploadConfig};

use async_trait::async_trait;
use bytes::Bytes;

/// A failed call to a destination, with the store's error code when there is one
/// (`NoSuchBucket`, `AccessDenied`, `PreconditionFailed`, …). Never holds a credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{store} {operation} of {key} failed: {}{message}{}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(), self.hint())]
pub struct UploadError {
    /// `S3`, `Azure`, `GCS` or `File`.
    pub store: &'static str,
    pub operation: &'static str,
    pub key: String,
    pub code: Option<String>,
    pub message: String,
}

impl UploadError {
    /// What the job's owner can do about a permanent error, for the codes whose fix is theirs.
    fn hint(&self) -> &'static str {
        match (self.store, self.code.as_deref()) {
            ("S3", _) => {}
            ("Azure", Some("Unauthenticated" | "PermissionDenied")) => {
                return " (Azure refused the credentials: check azure.account and azure.accesskey or azure.sastoken, \
                        and that a SAS token allows create and write)";
            }
            ("Azure", Some("NotFound")) => {
                return " (check azure.account, azure.container and azure.endpoint)";
            }
            ("GCS", Some("Unauthenticated" | "PermissionDenied")) => {
                return " (GCS refused the credentials: check gcs.credentials and the account's permissions on the bucket)";
            }
            ("GCS", Some("NotFound")) => return " (check gcs.bucket and gcs.endpoint)",
            _ => return "",
        }
        match self.code.as_deref() {
            Some(
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "NotSignedUp"
                | "InvalidToken"
                | "ExpiredToken",
            ) => {
                " (the S3 endpoint refused the credentials: check aws.accesskey, aws.secretkey and aws.sessiontoken)"
            }
            Some("AccessDenied" | "AllAccessDisabled") => {
                " (the credentials may not write to this bucket: check the bucket policy or the key's permissions)"
            }
            Some("NoSuchBucket") => " (check aws.bucket, and aws.region or aws.endpoint)",
            _ => "",
        }
    }
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: i32,
    pub etag: String,
    pub checksum_crc32: Option<String>,
}

/// What an object is stored as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub content_type: &'static str,
}

/// The raw calls. Implementations retry transient errors themselves; an error here is final.
/// Completion and single puts must refuse to replace an existing object.
#[async_trait]
pub trait Uploader: Send + Sync + 'static {
    /// Starts a multipart upload and returns its id; an upload that an earlier attempt of the
    /// same call created (its answer lost) is aborted, so that only the returned one is open.
    async fn create_multipart(&self, object: &ObjectMeta) -> Result<String, UploadError>;
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<UploadedPart, UploadError>;
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), UploadError>;
    /// Aborts a multipart upload; one already gone (`NoSuchUpload`) counts as aborted.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UploadError>;
    /// Aborts the multipart uploads still open for keys starting with `prefix` (a whole key,
    /// or every part of a job) that were started no later than `requested_at` (plus a margin
    /// for clocks), whatever their ids: one whose creation was cut off before its id came
    /// back, one a late part kept alive, or one a worker that died left. A later upload (a
    /// worker that took the job over) is left alone. Returns how many were aborted.
    async fn abort_all_under(
        &self,
        prefix: &str,
        requested_at: std::time::SystemTime,
    ) -> Result<usize, UploadError>;
    async fn put_object(&self, object: &ObjectMeta, data: Bytes) -> Result<(), UploadError>;
    /// Removes a complete object (what a cancelled one-call export wrote); one already gone
    /// counts as removed.
    async fn delete_object(&self, key: &str) -> Result<(), UploadError>;
    /// The URL of an object, as listed in the job's `extra.paths`, in the store's own form.
    fn url(&self, key: &str) -> String;
    /// The URL a manifest names an object by: what the store's own loaders read (`s3://bucket/key`
    /// for S3, the form Redshift's `COPY … MANIFEST` takes); elsewhere the store's URL.
    fn manifest_url(&self, key: &str) -> String {
        self.url(key)
    }
    /// The store's name in errors: `S3`, `Azure`, `GCS` or `File`.
    fn store(&self) -> &'static str {
        "S3"
    }
}
