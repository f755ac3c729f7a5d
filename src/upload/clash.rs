//! Writes that must never replace another writer's object: completions and puts are sent
//! with `If-None-Match: *`, and a refusal is looked into before it fails the job. Two
//! refusals are not conflicts at all:
//! - the answer to an earlier attempt was lost, and the SDK's retry finds the object that
//!   attempt wrote (it matches the [`Fingerprint`] of what we sent): done;
//! - an earlier run of the same job wrote the part and died before recording it (the object
//!   carries this job's id in its metadata but other rows): it is replaced, once, with
//!   `If-Match` on the ETag we read, so that only that very object is replaced.
//!
//! Anything else (an object some other writer put under the key) stays an error.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::ChecksumMode;

use super::UploadError;
use super::fingerprint::Fingerprint;
use super::s3::{OWNER_METADATA, S3Uploader, WriteIf};

/// What the object found under a refused key is.
enum Found {
    /// The one this write sent: an earlier attempt wrote it.
    Ours,
    /// A part an earlier run of this job wrote and never recorded, with its ETag.
    EarlierRun(String),
}

impl S3Uploader {
    /// Sends a conditional write (`send`, retried by the SDK); when it is refused with one of
    /// the `ambiguous` codes, settles what the refusal means.
    pub(super) async fn write_once<F, Fut, O, E, R>(
        &self,
        operation: &'static str,
        key: &str,
        ambiguous: &[&str],
        send: F,
        ours: impl Fn() -> Fingerprint,
    ) -> Result<(), UploadError>
    where
        F: Fn(WriteIf) -> Fut,
        Fut: Future<Output = Result<O, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let mut condition = WriteIf::Absent;
        loop {
            let replacing = matches!(condition, WriteIf::Is(_));
            let error = match send(condition).await {
                Ok(_) => return Ok(()),
                Err(e) => self.failed(operation, key, e),
            };
            if replacing || !error.code.as_deref().is_some_and(|c| ambiguous.contains(&c)) {
                return Err(error);
            }
            match self.inspect(key, error, ours()).await? {
                Found::Ours => return Ok(()),
                Found::EarlierRun(etag) => {
                    tracing::warn!(
                        key,
                        "replacing a part an earlier run of this job wrote but never recorded"
                    );
                    condition = WriteIf::Is(etag);
                }
            }
        }
    }

    /// Reads back the object under `key` after `error` refused a write; the refusal stands
    /// (as the error) unless the object is ours or an earlier run's.
    async fn inspect(&self, key: &str, error: UploadError, ours: Fingerprint) -> Result<Found, UploadError> {
        // 409: an earlier attempt is still being carried out; give it time to land.
        let waits: &[u64] =
            if error.code.as_deref() == Some("ConditionalRequestConflict") { &[1, 2, 4, 8] } else { &[0] };
        let mut head = None;
        for secs in waits {
            tokio::time::sleep(Duration::from_secs(*secs)).await;
            let answer = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await;
            let found = answer.is_ok();
            head = Some(answer);
            if found {
                break;
            }
        }
        match head.expect("at least one attempt") {
            Ok(h) if ours.matches(h.e_tag(), h.checksum_crc32()) => {
                tracing::info!(key, operation = error.operation, "an earlier attempt whose answer was lost had already written the object");
                Ok(Found::Ours)
            }
            Ok(h) if self.owner.is_some() && h.metadata().and_then(|m| m.get(OWNER_METADATA)) == self.owner.as_ref() => {
                Ok(Found::EarlierRun(h.e_tag().unwrap_or_default().to_string()))
            }
            Ok(_) => Err(UploadError {
                message: "an object with this key already exists and was not written by this job; it was left as it is".into(),
                ..error
            }),
            Err(e) => {
                let why = self.failed("HeadObject", key, e);
                tracing::warn!(key, error = %why, "could not read the object back to tell who wrote it");
                Err(UploadError { message: format!("{} (checking the object failed too: {})", error.message, why.message), ..error })
            }
        }
    }
}
