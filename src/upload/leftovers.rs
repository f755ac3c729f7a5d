//! Multipart uploads nobody will complete: S3 keeps (and bills) an open upload and its parts
//! until it is aborted. They come from a create whose answer was lost (the SDK's retry
//! created a second upload, and the first one's id never reached us), from a create or a
//! part cut off by a failure, and from a worker that died mid-part. Each is found by listing
//! the open uploads under its key and aborted.

use std::time::SystemTime;

use super::UploadError;
use super::s3::S3Uploader;

/// How far the store's clock may be from ours, in seconds, when an upload's `Initiated` time
/// tells whether it belongs to a call of ours.
pub(super) const CLOCK_MARGIN_SECS: i64 = 10;

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// One open multipart upload, as listed.
struct OpenUpload {
    pub key: String,
    pub id: String,
    /// When the store says it was created, in epoch seconds.
    pub initiated: Option<i64>,
}

impl S3Uploader {
    /// Aborts the open uploads under `prefix` that `select` picks; returns how many. One that
    /// cannot be aborted does not keep the others open (the last failure is returned).
    async fn abort_open(
        &self,
        prefix: &str,
        select: impl Fn(&OpenUpload) -> bool,
    ) -> Result<usize, UploadError> {
        let (mut aborted, mut failure) = (0, None);
        for upload in self.open_uploads(prefix).await?.iter().filter(|u| select(u)) {
            match crate::upload::Uploader::abort_multipart(self, &upload.key, &upload.id).await {
                Ok(()) => aborted += 1,
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(aborted),
        }
    }

    /// Aborts every open upload under `prefix` created until `requested_at` (with the clock
    /// margin): what an earlier run of a job left behind, not what a run after the call starts.
    pub(super) async fn abort_created_until(
        &self,
        prefix: &str,
        requested_at: SystemTime,
    ) -> Result<usize, UploadError> {
        let latest = epoch_secs(requested_at) + CLOCK_MARGIN_SECS;
        self.abort_open(prefix, |upload| {
            upload.key.starts_with(prefix) && upload.initiated.is_none_or(|t| t <= latest)
        })
        .await
    }

    /// After a create of `key` that needed more than one attempt and returned `kept`: aborts
    /// the uploads the earlier attempts created. They are the other uploads of exactly this
    /// key created from the time the call was made until now. The key belongs to this job's
    /// part alone, and the job to this worker alone while it holds the lease: another worker
    /// creates uploads of this key only after taking the job over, a whole lease later, and an
    /// earlier run's are older (that run's takeover aborts them, see
    /// `abort_uploads_left_behind`). A failure only costs a warning: the part itself is fine.
    pub(super) async fn abort_duplicates(&self, key: &str, kept: &str, requested_at: SystemTime) {
        // An attempt cut off by its timeout may still be creating its upload on the store's
        // side: when the first look finds none, look again a second later.
        for look in 0..2 {
            if look > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            let (from, until) = (
                epoch_secs(requested_at) - CLOCK_MARGIN_SECS,
                epoch_secs(SystemTime::now()) + CLOCK_MARGIN_SECS,
            );
            let ours = |u: &OpenUpload| {
                u.key == key && u.id != kept && u.initiated.is_none_or(|t| (from..=until).contains(&t))
            };
            match self.abort_open(key, ours).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(
                        key,
                        uploads = n,
                        "aborted the multipart uploads of create attempts whose answers were lost"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "could not abort a multipart upload a create attempt left open");
                    return;
                }
            }
        }
    }

    /// Every open multipart upload under `prefix`, over all pages of the listing.
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, UploadError> {
        let mut open = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let listed = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.failed("ListMultipartUploads", prefix, e))?;
            open.extend(listed.uploads().iter().filter_map(|u| {
                Some(OpenUpload {
                    key: u.key()?.to_string(),
                    id: u.upload_id()?.to_string(),
                    initiated: u.initiated().map(|t| t.secs()),
                })
            }));
            if listed.is_truncated() != Some(true) {
                break;
            }
            key_marker = listed.next_key_marker().map(str::to_string);
            id_marker = listed.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(open)
    }
}
