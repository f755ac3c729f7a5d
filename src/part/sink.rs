//! Where an encoder's output goes: upload-sized chunks, handed to the uploader as they fill.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// S3 allows 10,000 parts per upload; doubling the chunk size every 1,000 chunks lets one
/// object grow far past 10,000 × the base size (as ClickHouse and DuckDB do).
pub fn chunk_size(base: usize, chunk_index: usize) -> usize {
    const MAX: usize = 5 * 1024 * 1024 * 1024;
    base.saturating_mul(1usize << (chunk_index / 1000).min(20)).min(MAX)
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    ready: Vec<Bytes>,
    chunks_cut: usize,
    cut_bytes: u64,
    /// SHA-256 of every byte written: the object's checksum, for the manifest. Computed here,
    /// on the part writer's thread, as the bytes pass (SHA-NI makes it a small cost).
    digest: Sha256,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("chunks_cut", &self.chunks_cut)
            .field("cut_bytes", &self.cut_bytes)
            .finish()
    }
}

/// A cloneable `Write` that cuts what it receives into chunks of [`chunk_size`]. Shared
/// because compressors own their writer; every clone sees the same chunks.
#[derive(Debug, Clone)]
pub struct ChunkSink {
    state: Arc<Mutex<State>>,
    base: usize,
}

impl ChunkSink {
    pub fn new(base_chunk_size: usize) -> Self {
        Self { state: Arc::default(), base: base_chunk_size.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        let s = self.lock();
        s.cut_bytes + s.buf.len() as u64
    }

    /// Full chunks ready to upload.
    pub fn take_ready(&self) -> Vec<Bytes> {
        std::mem::take(&mut self.lock().ready)
    }

    /// SHA-256 (hex) of everything written so far; asked once the object is complete.
    pub fn sha256(&self) -> String {
        hex::encode(self.lock().digest.clone().finalize())
    }

    /// Every chunk not yet taken, the last one possibly short: the end of an object.
    pub fn take_all(&self) -> Vec<Bytes> {
        let mut chunks = self.take_ready();
        let rest = self.take_rest();
        if !rest.is_empty() {
            chunks.push(rest);
        }
        chunks
    }

    /// Whatever is left after the last full chunk (possibly empty).
    pub fn take_rest(&self) -> Bytes {
        let mut s = self.lock();
        let rest = std::mem::take(&mut s.buf);
        s.cut_bytes += rest.len() as u64;
        Bytes::from(rest)
    }
}

impl io::Write for ChunkSink {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        let base = self.base;
        let mut s = self.lock();
        s.digest.update(data);
        while !data.is_empty() {
            let size = chunk_size(base, s.chunks_cut);
            if s.buf.capacity() == 0 {
                s.buf.reserve_exact(size.min(64 * 1024 * 1024));
            }
            let take = (size - s.buf.len()).min(data.len());
            s.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if s.buf.len() == size {
                let chunk = Bytes::from(std::mem::take(&mut s.buf));
                s.cut_bytes += chunk.len() as u64;
                s.chunks_cut += 1;
                s.ready.push(chunk);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn cuts_exact_chunks_and_keeps_the_rest() {
        let mut sink = ChunkSink::new(4);
        sink.write_all(b"abcdefghij").unwrap();
        let ready = sink.take_ready();
        assert_eq!(ready, vec![Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh")]);
        assert_eq!(sink.written(), 10);
        assert_eq!(sink.take_rest(), Bytes::from_static(b"ij"));
        assert_eq!(sink.written(), 10);
        // `echo -n abcdefghij | sha256sum`
        assert_eq!(sink.sha256(), "72399361da6a7754fec986dca5b7cbaf1c810a28ded4abaf56b2106d06cb78b0");
    }

    #[test]
    fn chunk_size_doubles_every_thousand_chunks() {
        let mib8 = 8 << 20;
        assert_eq!(chunk_size(mib8, 0), mib8);
        assert_eq!(chunk_size(mib8, 999), mib8);
        assert_eq!(chunk_size(mib8, 1000), 2 * mib8);
        assert_eq!(chunk_size(mib8, 9999), 4 << 30);
        assert_eq!(chunk_size(4 * mib8, 9999), 5 << 30, "capped at S3's 5 GiB part limit");
        // 10,000 chunks hold far more than 10,000 × the base size.
        let total: u128 = (0..10_000).map(|i| chunk_size(mib8, i) as u128).sum();
        assert!(total > 100 * 10_000 * mib8 as u128);
    }
}
