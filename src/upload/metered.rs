//! An [`Uploader`] layer that times every call and counts failures in [`Metrics`].

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
}

#[async_trait]
impl Uploader for Metered {
    async fn create_multipart(&self, object: &ObjectMeta) -> Result<String, UploadError> {
        let t = Instant::now();
        let r = self.inner.create_multipart(object).await;
        self.metrics.s3_call("CreateMultipartUpload", t, &r);
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
        self.metrics.s3_call("UploadPart", t, &r);
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
        self.metrics.s3_call("CompleteMultipartUpload", t, &r);
        r
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UploadError> {
        let t = Instant::now();
        let r = self.inner.abort_multipart(key, upload_id).await;
        self.metrics.s3_call("AbortMultipartUpload", t, &r);
        r
    }

    async fn abort_all_under(
        &self,
        prefix: &str,
        requested_at: std::time::SystemTime,
    ) -> Result<usize, UploadError> {
        let t = Instant::now();
        let r = self.inner.abort_all_under(prefix, requested_at).await;
        self.metrics.s3_call("ListMultipartUploads", t, &r);
        r
    }

    async fn put_object(&self, object: &ObjectMeta, data: Bytes) -> Result<(), UploadError> {
        let t = Instant::now();
        let r = self.inner.put_object(object, data).await;
        self.metrics.s3_call("PutObject", t, &r);
        r
    }

    fn url(&self, key: &str) -> String {
        self.inner.url(key)
    }
}
