//! The zstd compressor: one zstd frame per part, compressed by zstd's own worker threads
//! (one per core), so that the `zstd` CLI, Python's `zstandard` and every zstd reader read
//! it as one stream.
//!
//! Multi-threaded zstd holds whole jobs of input (several MiB each) before any output
//! appears, so the size bound counts every byte given since the last flush as if it were
//! stored uncompressed: a true bound, if a loose one. When it reaches a part's limit the part
//! writer settles, which flushes the frame (ends the current block, waits for the workers) and
//! makes the size exact; the part is decided on that. Near the limit this flushes more often
//! (each flush costs a little ratio), never past it.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Compressor, Counted, worst_case};

pub struct Zstd<W: Write> {
    encoder: zstd::stream::write::Encoder<'static, Counted<W>>,
    written: Arc<AtomicU64>,
    /// Bytes taken since the last flush: zstd may hold all of them.
    unflushed: u64,
}

/// zstd's levels that make sense for an export (20-22 need far more memory per worker).
pub const LEVELS: std::ops::RangeInclusive<i32> = 1..=19;

impl<W: Write> Zstd<W> {
    pub fn new(out: W, level: i32) -> io::Result<Self> {
        let (out, written) = Counted::new(out);
        let mut encoder =
            zstd::stream::write::Encoder::new(out, level.clamp(*LEVELS.start(), *LEVELS.end()))?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        encoder.multithread(workers)?;
        // A checksum, so that a reader can tell a damaged part (as gzip's CRC does).
        encoder.include_checksum(true)?;
        Ok(Self { encoder, written, unflushed: 0 })
    }
}

impl<W: Write + Send> Compressor for Zstd<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.encoder.write_all(data)?;
        self.unflushed += data.len() as u64;
        Ok(())
    }

    fn stored_bound(&self) -> u64 {
        self.written.load(Ordering::Relaxed) + worst_case(self.unflushed)
    }

    fn settle(&mut self) -> io::Result<()> {
        self.encoder.flush()?;
        self.unflushed = 0;
        Ok(())
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        self.encoder.finish()?.flush()
    }
}
