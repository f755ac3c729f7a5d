//! An [`Uploader`] layer that times every call and counts failures in [`Metrics`], by
//! destination type.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, UploadError, UploadedPart, Uploader};
use crate::metrics::Metrics;

pub struct Metered {
    inner: Arc<dyn Uploader>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Uploader>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    /// S3 calls keep their own `s3_*` series (as before other destinations existed); every
    /// call is also counted under its destination type.
    fn record<T>(&self, operation: &'static str, started: Instant, result: &Result<T, UploadError>) {
        let destination = match self.inner.store() {
            "S3" => {
                self.metrics.s3_call(operation, started, result);
                "s3"
            }
            "Azure" => "azure",
            "GCS" => "gcs",
            _ => "file",
        };
        self.metrics.destination_call(destination, operation, started, result);
    }
}

#[async_trait]
impl Uploader for Metered {
    async fn create_multipart(&self, object: &ObjectMeta) -> Result<String, UploadError> {
        let t = Instant::now();
        let r = self.inner.create_multipart(object).await;
        self.record("CreateMultipartUpload", t, &r);
        r
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<UploadedPart, UploadError> {
        let t = Instant::now();
        let r = self.inner.upload_part(key, upload_id, number, data).await;
        self.record("UploadPart", t, &r);
        r
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), UploadError> {
        let t = Instant::now();
        let r = self.inner.complete_multipart(key, upload_id, parts).await;
        self.record("CompleteMultipartUpload", t, &r);
        r
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UploadError> {
        let t = Instant::now();
        let r = self.inner.abort_multipart(key, upload_id).await;
        self.record("AbortMultipartUpload", t, &r);
        r
    }

    async fn abort_all_under(
        &self,
        prefix: &str,
        requested_at: std::time::SystemTime,
    ) -> Result<usize, UploadError> {
        let t = Instant::now();
        let r = self.inner.abort_all_under(prefix, requested_at).await;
        self.record("ListMultipartUploads", t, &r);
        r
    }

    async fn put_object(&self, object: &ObjectMeta, data: Bytes) -> Result<(), UploadError> {
        let t = Instant::now();
        let r = self.inner.put_object(object, data).await;
        self.record("PutObject", t, &r);
        r
    }

    async fn delete_object(&self, key: &str) -> Result<(), UploadError> {
        let t = Instant::now();
        let r = self.inner.delete_object(key).await;
        self.record("DeleteObject", t, &r);
        r
    }

    fn url(&self, key: &str) -> String {
        self.inner.url(key)
    }

    fn manifest_url(&self, key: &str) -> String {
        self.inner.manifest_url(key)
    }

    fn store(&self) -> &'static str {
        self.inner.store()
    }
}
