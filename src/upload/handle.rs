//! One object being uploaded while it is still being written.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{ObjectMeta, UploadError, UploadedPart, Uploader};

/// Chunks go up as parts of one multipart upload, several at once (bounded by
/// `concurrency`; `put_chunk` waits for a free slot, which bounds memory). The multipart upload
/// is only created once a first full chunk exists: an object that fits in one chunk is a
/// single `PutObject`. Dropping a handle without [`finish`](Self::finish) or
/// [`abort`](Self::abort) leaks the upload, so callers always end with one of them.
pub struct ObjectUpload {
    uploader: Arc<dyn Uploader>,
    object: ObjectMeta,
    upload_id: Option<String>,
    next_number: i32,
    in_flight: JoinSet<Result<UploadedPart, UploadError>>,
    done: Vec<UploadedPart>,
    slots: Arc<Semaphore>,
    bytes: u64,
}

impl ObjectUpload {
    pub fn new(uploader: Arc<dyn Uploader>, object: ObjectMeta, concurrency: usize) -> Self {
        Self {
            uploader,
            object,
            upload_id: None,
            next_number: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            bytes: 0,
        }
    }

    pub fn key(&self) -> &str {
        &self.object.key
    }

    /// Starts the upload of one full chunk (every chunk but the last must be at least 5 MiB).
    pub async fn put_chunk(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        if self.upload_id.is_none() {
            self.upload_id = Some(self.uploader.create_multipart(&self.object).await?);
        }
        // Collect what has finished, failing fast on the first error.
        while let Some(res) = self.in_flight.try_join_next() {
            self.done.push(joined(res, &self.object.key)??);
        }
        let permit = self.slots.clone().acquire_owned().await.expect("semaphore never closed");
        let number = self.next_number;
        self.next_number += 1;
        self.bytes += chunk.len() as u64;
        let (uploader, key, id) = (self.uploader.clone(), self.object.key.clone(), self.upload_id.clone().unwrap_or_default());
        self.in_flight.spawn(async move {
            let _permit = permit;
            uploader.upload_part(&key, &id, number, chunk).await
        });
        Ok(())
    }

    /// Uploads `last` (possibly empty) and completes the object; returns its size. On error
    /// the multipart upload is aborted before returning.
    pub async fn finish(mut self, last: Bytes) -> Result<u64, UploadError> {
        let result = self.try_finish(last).await;
        if result.is_err() {
            self.abort_inner().await;
        }
        result
    }

    async fn try_finish(&mut self, last: Bytes) -> Result<u64, UploadError> {
        let Some(id) = self.upload_id.clone() else {
            let size = last.len() as u64;
            self.uploader.put_object(&self.object, last).await?;
            return Ok(size);
        };
        if !last.is_empty() {
            self.put_chunk(last).await?;
        }
        while let Some(res) = self.in_flight.join_next().await {
            self.done.push(joined(res, &self.object.key)??);
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.number);
        self.uploader.complete_multipart(&self.object.key, &id, parts).await?;
        self.upload_id = None;
        Ok(self.bytes)
    }

    /// Stops the uploads in flight and aborts the multipart upload, so that no part is left
    /// behind in the bucket.
    pub async fn abort(mut self) {
        self.abort_inner().await;
    }

    async fn abort_inner(&mut self) {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        if let Some(id) = self.upload_id.take()
            && let Err(e) = self.uploader.abort_multipart(&self.object.key, &id).await
        {
            tracing::warn!(key = %self.object.key, error = %e, "could not abort multipart upload");
        }
    }
}

fn joined<T>(res: Result<T, tokio::task::JoinError>, key: &str) -> Result<T, UploadError> {
    res.map_err(|e| UploadError { operation: "UploadPart", key: key.to_string(), code: None, message: e.to_string() })
}
