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
    /// A multipart upload was asked for: even without its id (the request may have been cut
    /// off before the answer came), an abort must look for it.
    multipart_requested: Option<std::time::SystemTime>,
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
            multipart_requested: None,
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
            self.multipart_requested = Some(std::time::SystemTime::now());
            self.upload_id = Some(self.uploader.create_multipart(&self.object).await?);
        }
        // Collect what has finished, failing fast on the first error.
        while let Some(res) = self.in_flight.try_join_next() {
            self.done.push(joined(res, self.uploader.store(), &self.object.key)??);
        }
        let permit = self.slots.clone().acquire_owned().await.expect("semaphore never closed");
        let number = self.next_number;
        self.next_number += 1;
        self.bytes += chunk.len() as u64;
        let (uploader, key, id) =
            (self.uploader.clone(), self.object.key.clone(), self.upload_id.clone().unwrap_or_default());
        self.in_flight.spawn(async move {
            let _permit = permit;
            uploader.upload_part(&key, &id, number, chunk).await
        });
        Ok(())
    }

    /// Uploads `last` (possibly empty) and completes the object; returns its size. On error
    /// the multipart upload is aborted before returning.
    /// The handle stays with its owner until this returns, so that an interrupted finish
    /// (a shutdown deadline) can still be aborted.
    pub async fn finish(&mut self, last: Bytes) -> Result<u64, UploadError> {
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
            self.done.push(joined(res, self.uploader.store(), &self.object.key)??);
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.number);
        self.uploader.complete_multipart(&self.object.key, &id, parts).await?;
        self.upload_id = None;
        self.multipart_requested = None;
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
        let key = &self.object.key;
        let known = self.upload_id.take();
        if let Some(id) = &known
            && let Err(e) = self.uploader.abort_multipart(key, id).await
        {
            tracing::warn!(%key, error = %e, "could not abort multipart upload");
        }
        // S3 advises aborting again: a part upload that was under way can outlive the abort,
        // and a creation cut off before its answer left an upload whose id we never saw (the
        // store may still be creating it: look twice, a second apart).
        if let Some(requested_at) = self.multipart_requested.take() {
            let looks = if known.is_some() { 1 } else { 2 };
            for look in 0..looks {
                if look > 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                match self.uploader.abort_all_under(key, requested_at).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(%key, uploads = n, "aborted multipart uploads left behind"),
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "could not look for multipart uploads left behind")
                    }
                }
            }
        }
    }
}

fn joined<T>(
    res: Result<T, tokio::task::JoinError>,
    store: &'static str,
    key: &str,
) -> Result<T, UploadError> {
    res.map_err(|e| UploadError {
        store,
        operation: "UploadPart",
        key: key.to_string(),
        code: None,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::job::Format;
    use crate::part::{PartFile, PartOptions};

    /// An in-memory bucket that enforces S3's multipart rules: part numbers 1 to 10,000, and
    /// every part but the last at least `min_part` bytes.
    struct StrictBucket {
        min_part: usize,
        parts: Mutex<BTreeMap<i32, Bytes>>,
        object: Mutex<Option<Vec<u8>>>,
    }

    fn refused(operation: &'static str, message: String) -> UploadError {
        UploadError { store: "S3", operation, key: "k".into(), code: Some("InvalidArgument".into()), message }
    }

    #[async_trait]
    impl Uploader for StrictBucket {
        async fn create_multipart(&self, _: &ObjectMeta) -> Result<String, UploadError> {
            Ok("upload".into())
        }
        async fn upload_part(
            &self,
            _: &str,
            _: &str,
            number: i32,
            data: Bytes,
        ) -> Result<UploadedPart, UploadError> {
            if !(1..=10_000).contains(&number) {
                return Err(refused("UploadPart", format!("part number {number} is outside 1..=10000")));
            }
            self.parts.lock().unwrap().insert(number, data);
            Ok(UploadedPart { number, etag: format!("\"{number}\""), checksum_crc32: None })
        }
        async fn complete_multipart(
            &self,
            _: &str,
            _: &str,
            listed: Vec<UploadedPart>,
        ) -> Result<(), UploadError> {
            let parts = std::mem::take(&mut *self.parts.lock().unwrap());
            let numbers: Vec<i32> = listed.iter().map(|p| p.number).collect();
            assert_eq!(
                numbers,
                parts.keys().copied().collect::<Vec<_>>(),
                "every uploaded part is listed, in order"
            );
            let mut object = Vec::new();
            for (i, data) in parts.values().enumerate() {
                if i + 1 < parts.len() && data.len() < self.min_part {
                    return Err(refused(
                        "CompleteMultipartUpload",
                        format!("part {} is {} bytes", i + 1, data.len()),
                    ));
                }
                object.extend_from_slice(data);
            }
            *self.object.lock().unwrap() = Some(object);
            Ok(())
        }
        async fn abort_multipart(&self, _: &str, _: &str) -> Result<(), UploadError> {
            Ok(())
        }
        async fn abort_all_under(&self, _: &str, _: std::time::SystemTime) -> Result<usize, UploadError> {
            Ok(0)
        }
        async fn put_object(&self, _: &ObjectMeta, data: Bytes) -> Result<(), UploadError> {
            *self.object.lock().unwrap() = Some(data.to_vec());
            Ok(())
        }
        async fn delete_object(&self, _: &str) -> Result<(), UploadError> {
            *self.object.lock().unwrap() = None;
            Ok(())
        }
        fn url(&self, key: &str) -> String {
            key.into()
        }
    }

    /// `multiplefile=false` writes one object however large: 30,000 × the upload part size
    /// goes up in well under S3's 10,000 parts because the part size grows as the object does.
    #[tokio::test]
    async fn an_object_of_30000_times_the_part_size_stays_within_10000_parts() {
        const PART: usize = 1024;
        let bucket =
            Arc::new(StrictBucket { min_part: PART, parts: Mutex::default(), object: Mutex::default() });
        let meta = ObjectMeta { key: "apiv2_x.csv".into(), content_type: "text/csv" };
        let mut upload = ObjectUpload::new(bucket.clone(), meta, 4);
        let options = PartOptions { chunk_size: PART, ..PartOptions::new(Format::Plain) };
        let mut encoder = PartFile::new(&options, b"n,text\n").unwrap();
        let mut expected = b"n,text\n".to_vec();
        let mut i = 0u64;
        while expected.len() < 30_000 * PART {
            let row = format!("{i},row number {i} of an export larger than ten thousand upload parts\n");
            expected.extend_from_slice(row.as_bytes());
            encoder.write_row(row.as_bytes()).unwrap();
            for chunk in encoder.take_chunks() {
                upload.put_chunk(chunk).await.unwrap();
            }
            i += 1;
        }
        let mut rest = encoder.finish(b"").unwrap().chunks;
        let last = rest.pop().unwrap_or_default();
        for chunk in rest {
            upload.put_chunk(chunk).await.unwrap();
        }
        let parts_used = upload.next_number - 1;
        let size = upload.finish(last).await.unwrap();
        assert!(parts_used < 10_000, "{parts_used} parts");
        assert_eq!(size, expected.len() as u64);
        assert!(
            bucket.object.lock().unwrap().as_deref() == Some(&expected[..]),
            "the object is exactly the CSV"
        );
    }
}
