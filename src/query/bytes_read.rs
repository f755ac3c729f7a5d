//! How many bytes a query fetched from its tables' storage: every object store a query
//! reads through (local files and `s3://` buckets) is wrapped in a [`CountingStore`] sharing
//! one [`BytesRead`]. This is what shows a Parquet table's pruning at work: a job over one
//! hour of a year-long table fetches that hour's row groups and the files' footers, not the
//! year. The figure counts bytes as storage hands them over (compressed, as stored), whatever
//! the table's format; listings and metadata-only requests (HEAD) are not counted.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// The bytes one query has fetched so far; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct BytesRead(Arc<AtomicU64>);

impl BytesRead {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// An object store that counts the bytes read through it into a [`BytesRead`].
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    read: BytesRead,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, read: BytesRead) -> Self {
        Self { inner, read }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Errors name the store: they must read as the inner store's.
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let mut result = self.inner.get_opts(location, options).await?;
        if head {
            return Ok(result);
        }
        result.payload = match result.payload {
            GetResultPayload::Stream(stream) => {
                let read = self.read.clone();
                GetResultPayload::Stream(
                    stream
                        .inspect(move |chunk| {
                            if let Ok(bytes) = chunk {
                                read.add(bytes.len() as u64);
                            }
                        })
                        .boxed(),
                )
            }
            // A local file is handed over open; its reader reads the range asked for.
            file @ GetResultPayload::File(..) => {
                self.read.add(result.range.end.saturating_sub(result.range.start));
                file
            }
        };
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let parts = self.inner.get_ranges(location, ranges).await?;
        self.read.add(parts.iter().map(|b| b.len() as u64).sum());
        Ok(parts)
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::{GetRange, ObjectStoreExt};

    use super::*;

    #[tokio::test]
    async fn counts_what_is_read_and_not_what_is_only_looked_at() {
        let dir = std::env::temp_dir().join(format!("forwarder-bytes-read-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t.bin"), vec![7u8; 10_000]).unwrap();
        let read = BytesRead::default();
        let store =
            CountingStore::new(Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap()), read.clone());
        let path = Path::from("t.bin");
        assert_eq!(store.head(&path).await.unwrap().size, 10_000);
        let _: Vec<_> = store.list(None).collect().await;
        assert_eq!(read.get(), 0, "metadata is not data");
        let range = store
            .get_opts(&path, GetOptions { range: Some(GetRange::Bounded(100..1100)), ..Default::default() });
        assert_eq!(range.await.unwrap().bytes().await.unwrap().len(), 1000);
        assert_eq!(read.get(), 1000);
        store.get_ranges(&path, &[0..10, 20..50]).await.unwrap();
        assert_eq!(read.get(), 1040);
        // A stream payload (as S3 gives) is counted as it flows.
        let memory = Arc::new(object_store::memory::InMemory::new());
        memory.put(&path, PutPayload::from(vec![1u8; 5000])).await.unwrap();
        let store = CountingStore::new(memory, read.clone());
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().len(), 5000);
        assert_eq!(read.get(), 6040);
    }
}
